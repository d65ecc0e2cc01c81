"""MRI reconstruction workbench: library and desktop app.

Conventions (see DESIGN.md): complex tensors are ``torch.complex64``; images ``[..., H, W]``; multi-coil
k-space ``[C, H, W]`` per slice; non-Cartesian k-space ``[C, K]`` with a trajectory ``[2, K]`` in radians in
[-pi, pi); the centred orthonormal FFT; sensitivity maps normalised so that sum_c |S_c|^2 = 1 in the object.
"""

from workbench.threads import keep_freed_memory as _keep_freed_memory
from workbench.threads import set_passive_wait_policy as _set_passive_wait_policy

# Idle OpenMP threads sleep instead of spinning (a shared machine): set before anything imports torch, whose
# OpenMP runtime reads it once; a policy the user chose is kept. Freed tensors' memory is reused instead of
# faulted in again every iteration (workbench.threads).
_set_passive_wait_policy()
_keep_freed_memory()

__version__ = "0.1.0"
