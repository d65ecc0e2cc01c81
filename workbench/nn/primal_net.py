"""The unrolled primal network shared by XPDNet (Cartesian) and NC-PDNet (non-Cartesian), after Ramzi et al.
("XPDNet for MRI reconstruction", fastMRI challenge 2020; "NC-PDNet", IEEE TMI 2022).

One implementation, two operators: the network only talks to an :class:`~workbench.nn.batch.Encoding`
(Cartesian SENSE for XPDNet, NUFFT SENSE with density compensation and a Toeplitz normal for NC-PDNet).

Algorithm (``n_iter`` unrolled iterations, a primal buffer of ``n_primal`` complex images)::

    s      = 99th percentile of the zero-filled RSS      # scanner units do not matter
    S      = refine(ACS maps)                           # sum_c |S_c|^2 = 1
    b      = A^H y / s                                  # (A^H D y / s for NC-PDNet)
    x[0..n_primal-1] = b, or with init="cg" the CG-SENSE solution of (A^H A + lam I) x = b
    for i in range(n_iter):
        r = A^H A x[0] - b                              # A^H (A x - y): the residual data consistency
        x = x + CNN_i([x, r])                           # MWCNN on real/imag channels, one per iteration
    output = s |x[0]|, cropped to the reconstruction size

With ``final_data_consistency`` (Cartesian data), the last step puts the measured samples back: the coil images
``S x[0]`` get the measured k-space where it was sampled, and the output is their root-sum-of-squares (the
fastMRI reference's combination) with the phase of ``S^H`` of them. The network then only has to predict
what was not measured; without it the measured lines (and with them the scan's noise, which the reference
shares) pass through six CNNs and come out smoothed. The config says whether the network was trained with the
step; :meth:`PrimalNet.reconstruct` may switch it on for any weights (the xpdnet plugin does by default:
``benchmarks/results/deep.md`` has the figures with and without).

Shapes: a :class:`~workbench.nn.batch.Batch` of ``B`` slices -> complex ``[B, H, W]`` (grid) or magnitude
``[B, h, w]`` (reconstruction size).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from workbench.arrays import fit_shape
from workbench.nn.batch import MAPS_METHODS
from workbench.nn.common import channels_to_complex, complex_to_channels, robust_scale
from workbench.nn.consistency import NetworkSolution
from workbench.nn.mwcnn import MWCNN, MWCNNConfig
from workbench.nn.sens_net import SensitivityRefiner, SensNetConfig, normalise_maps
from workbench.physics.fft import rss


@dataclass
class PrimalNetConfig:
    """Architecture of the unrolled network.

    Attributes:
        n_iter: unrolled iterations.
        n_primal: complex images in the primal buffer (5 in XPDNet).
        image_net: the per-iteration MWCNN (:class:`MWCNNConfig` fields).
        share_weights: one image network for all iterations instead of one per iteration.
        refine_maps: learn a refinement of the ACS coil maps (:class:`SensNetConfig` fields in ``sens_net``).
        acs_calib: largest calibration box (rows, cols) for the initial maps.
        acs_threshold: the initial maps are zero where the low-resolution coil energy is below this fraction
            of its 99th percentile (0: maps everywhere, so that data consistency also reaches the background).
        checkpointing: recompute each iteration in the backward pass (saves memory on GPUs, costs time).
        final_data_consistency: replace the measured k-space samples of the output's coil images by the data and
            output their root-sum-of-squares (Cartesian operators; no effect on non-Cartesian ones).
        initial_maps: "acs" (low-resolution ACS maps) or "espirit" (the problem's maps, else ESPIRiT), before
            the refinement; Cartesian only.
        init: "adjoint" (the buffer starts as the zero-filled ``A^H y``) or "cg" (as the CG-SENSE solution).
        init_cg_iter, init_lam: CG iterations and Tikhonov weight (relative to ``||A||^2 ~ 1``) of "cg".
        train_consistency_lams: in training, the last image goes through the consistency solve of the plugins
            (:mod:`workbench.nn.consistency`, ``consistency_iter`` CG iterations, differentiable) with one of these
            weights drawn per step, on a fraction ``train_consistency_p`` of the steps, so that the network
            learns what the solve does not fix; empty: never (inference chooses its own weight).
    """

    n_iter: int = 6
    n_primal: int = 5
    image_net: MWCNNConfig = field(default_factory=MWCNNConfig)
    share_weights: bool = False
    refine_maps: bool = True
    sens_net: SensNetConfig = field(default_factory=SensNetConfig)
    acs_calib: tuple[int, int] = (24, 24)
    acs_threshold: float = 0.05
    checkpointing: bool = False
    final_data_consistency: bool = False
    initial_maps: str = "acs"
    init: str = "adjoint"
    init_cg_iter: int = 10
    init_lam: float = 0.01
    train_consistency_lams: tuple[float, ...] = ()
    train_consistency_p: float = 0.75
    consistency_iter: int = 20

    def __post_init__(self):
        if isinstance(self.image_net, dict):
            self.image_net = MWCNNConfig(**self.image_net)
        if isinstance(self.sens_net, dict):
            self.sens_net = SensNetConfig(**self.sens_net)
        self.acs_calib = tuple(int(v) for v in self.acs_calib)
        self.train_consistency_lams = tuple(float(v) for v in self.train_consistency_lams)
        if any(v <= 0 for v in self.train_consistency_lams) or not 0 <= self.train_consistency_p <= 1 \
                or self.consistency_iter < 1:
            raise ValueError(f"train_consistency_lams must be > 0, train_consistency_p in [0, 1] and consistency_iter "
                             f">= 1, got {self.train_consistency_lams}, {self.train_consistency_p}, "
                             f"{self.consistency_iter}")
        if self.n_iter < 1 or self.n_primal < 1:
            raise ValueError(f"n_iter and n_primal must be >= 1, got {self.n_iter}, {self.n_primal}")
        if self.initial_maps not in MAPS_METHODS:
            raise ValueError(f"initial_maps must be one of {MAPS_METHODS}, got {self.initial_maps!r}")
        if self.init not in ("adjoint", "cg") or self.init_cg_iter < 1 or self.init_lam < 0:
            raise ValueError(f"init must be 'adjoint' or 'cg' with init_cg_iter >= 1 and init_lam >= 0, got "
                             f"{self.init!r}, {self.init_cg_iter}, {self.init_lam}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["acs_calib"] = list(self.acs_calib)
        d["train_consistency_lams"] = list(self.train_consistency_lams)
        return d


class PrimalNet(nn.Module):
    """XPDNet / NC-PDNet (see the module docstring). The operator comes with the batch.

    ``forward(batch)`` (training, also under DistributedDataParallel) returns ``(|x| / s, s)``: the normalised
    magnitude ``[B, h, w]`` on ``batch.recon_shape`` and the scale ``[B]``. :meth:`reconstruct` returns the
    complex image on the grid in data units, with progress per iteration.
    """

    model_name = "xpdnet"

    def __init__(self, config: PrimalNetConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = PrimalNetConfig(**config)
        self.config = cfg = config or PrimalNetConfig()
        channels = 2 * (cfg.n_primal + 1)  # buffer + residual term, real/imag
        n_nets = 1 if cfg.share_weights else cfg.n_iter
        self.image_nets = nn.ModuleList(MWCNN(channels, 2 * cfg.n_primal, cfg.image_net) for _ in range(n_nets))
        self.sens_net = SensitivityRefiner(cfg.sens_net) if cfg.refine_maps else None

    # ------------------------------------------------------------------------------------------------------
    def maps(self, batch) -> torch.Tensor:
        """Coil maps ``[B, C, H, W]``: the ACS estimate, refined when configured, normalised."""
        initial = self.encoding(batch).initial_maps()
        return self.sens_net(initial) if self.sens_net is not None else normalise_maps(initial)

    def without_map_refinement(self) -> "PrimalNet":
        """This network with the ACS / ESPIRiT maps as they are instead of refined: a view that shares every
        other module and parameter (``self`` when it has no refinement). On the real Cartesian rows the
        refinement changed the 8-coil head's maps by half their energy and cost 0.1-0.7 dB there
        (``benchmarks/results/realdata_deep_*.md``, the ``refine_maps`` plugin parameter). The image networks are
        the original's: ``deepcopy`` the view before changing it in place (``train()``, ``to()``, loading a state),
        as adaptation does."""
        if self.sens_net is None:
            return self
        view = copy.copy(self)
        # nn.Module keeps submodules, parameters, buffers and hooks in dicts: the view gets its own, so that what is
        # registered on it stays off the original
        for name, value in vars(self).items():
            if name.startswith("_") and isinstance(value, dict):
                setattr(view, name, type(value)(value))
        view._modules["sens_net"] = None
        view.config = replace(self.config, refine_maps=False)
        return view

    def initial_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tensors of a weight file this network starts from in training (``--init``): without a map refiner
        (``refine_maps: false``) the refiner's tensors of weights that had one are left out; image networks with
        fewer filters are widened to this one's (:meth:`MWCNN.widened_state`: the same function to start from);
        a file of fewer unrolled iterations (at least 2, unshared) is deepened: the iterations it lacks follow
        its own and start as identities (:meth:`MWCNN.zero_output_state`: their updates are zero, so the start
        computes the file's image; training reaches them through their output layers). The rest must fit.
        Raises ``ValueError`` when an image network cannot be widened."""
        if self.sens_net is None:
            tensors = {k: v for k, v in tensors.items() if not k.startswith("sens_net.")}
        out = dict(tensors)
        in_file = {int(k.split(".")[1]) for k in tensors if k.startswith("image_nets.")}
        # one network in the file may be a shared one, applied every iteration: that is not deepened
        deepen = not self.config.share_weights and len(in_file) >= 2 and in_file == set(range(len(in_file)))
        for i, net in enumerate(self.image_nets):  # as they are where the filters agree
            prefix = f"image_nets.{i}."
            part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if part:
                state = net.widened_state(part)
            elif deepen:
                state = net.zero_output_state()
            else:  # left missing: loading names the iterations the file lacks
                continue
            out.update({prefix + k: v for k, v in state.items()})
        return out

    def encoding(self, batch):
        """The batch's operator with this network's calibration and initial-maps settings."""
        cfg = self.config
        return batch.encoding(cfg.acs_calib, cfg.acs_threshold, cfg.initial_maps)

    def initial_image(self, rhs: torch.Tensor, maps: torch.Tensor, enc) -> torch.Tensor:
        """The buffer's starting image ``[B, H, W]``: ``rhs`` (zero-filled) or the CG-SENSE solution."""
        if self.config.init != "cg":
            return rhs
        from workbench.solvers import conjugate_gradient

        with torch.no_grad():
            m = maps.detach()
            return conjugate_gradient(lambda v: enc.normal(v, m), rhs.detach(), n_iter=self.config.init_cg_iter,
                                      tol=0.0, lam=self.config.init_lam, item_ndim=2).x

    def _iteration(self, i: int, buffer: torch.Tensor, maps: torch.Tensor, rhs: torch.Tensor, enc) -> torch.Tensor:
        residual = enc.normal(buffer[:, 0], maps) - rhs
        net = self.image_nets[0 if self.config.share_weights else i]
        update = net(complex_to_channels(torch.cat([buffer, residual[:, None]], dim=1)))
        return buffer + channels_to_complex(update)

    @staticmethod
    def data_consistent_output(x: torch.Tensor, maps: torch.Tensor, scale: torch.Tensor, enc) -> torch.Tensor:
        """The final data-consistency step (module docstring) on ``x [B, H, W]`` in normalised units; ``x``
        unchanged where the encoding has no projection onto the data. The phase carries no gradient (the
        training losses see the magnitude)."""
        s = scale[:, None, None, None]
        coils = enc.consistent_coil_images(maps * x[:, None] * s)
        if coils is None:
            return x
        coils = coils / s
        return torch.polar(rss(coils, dim=1), (maps.conj() * coils).sum(1).detach().angle())

    def _training_consistency(self, x: torch.Tensor, maps: torch.Tensor, rhs: torch.Tensor, enc) -> torch.Tensor:
        """``x`` through the consistency solve with a weight drawn from ``train_consistency_lams``, on a fraction
        ``train_consistency_p`` of the calls (the global torch generator draws); else ``x``."""
        cfg = self.config
        if not cfg.train_consistency_lams or float(torch.rand(())) >= cfg.train_consistency_p:
            return x
        from workbench.solvers import conjugate_gradient

        lam = cfg.train_consistency_lams[int(torch.randint(len(cfg.train_consistency_lams), ()))]
        return conjugate_gradient(lambda v: enc.normal(v, maps), rhs + lam * x, x0=x, n_iter=cfg.consistency_iter,
                                  tol=0.0, lam=lam, item_ndim=2).x

    def _normalised_problem(self, batch) -> tuple:
        """``(encoding, maps [B, C, H, W], rhs = A^H y / s [B, H, W], s [B])`` of a batch."""
        enc = self.encoding(batch)
        coil = enc.coil_images()
        scale = robust_scale(rss(coil, dim=1))
        maps = self.maps(batch)
        return enc, maps, (coil * maps.conj()).sum(1) / scale[:, None, None], scale

    @torch.no_grad()
    def solve(self, batch, callback: Callable[[int, torch.Tensor], None] | None = None) -> NetworkSolution:
        """The network's image before any final data-consistency step, with the normalised problem it solved
        (:class:`~workbench.nn.consistency.NetworkSolution`: the final consistency solve, the output in data
        units). ``callback(i, x)`` is called after iteration ``i`` (0-based) with the image in data units."""
        box: list[NetworkSolution] = []
        scales: list[torch.Tensor] = []

        def report(i, x):
            if callback is not None:
                callback(i, x * scales[0][:, None, None])

        self.unrolled(batch, report, scales, final_data_consistency=False, solution_out=box)
        return box[0]

    def unrolled(self, batch, callback: Callable[[int, torch.Tensor], None] | None = None,
                 scale_out: list | None = None, final_data_consistency: bool | None = None,
                 networks: bool = True, solution_out: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the iterations: the first buffer image ``[B, H, W]`` (normalised units) and the scale ``[B]``.
        ``callback(i, x)`` is called after iteration ``i`` (0-based) with the current image (normalised);
        ``scale_out`` (a list) receives the scale before the first iteration; ``final_data_consistency``
        (``None``: the config's) ends with the data-consistency step; ``networks=False`` skips the image
        networks: the starting image (zero-filled, or CG-SENSE with ``init="cg"``), for comparisons.
        ``solution_out`` (a list) receives the :class:`NetworkSolution` of the last image before the final
        data-consistency step."""
        if final_data_consistency is None:
            final_data_consistency = self.config.final_data_consistency
        enc, maps, rhs, scale = self._normalised_problem(batch)
        if scale_out is not None:
            scale_out.append(scale)
        buffer = self.initial_image(rhs, maps, enc)[:, None].repeat(1, self.config.n_primal, 1, 1)
        if not networks:
            x = buffer[:, 0]
            return (self.data_consistent_output(x, maps, scale, enc) if final_data_consistency else x), scale
        for i in range(self.config.n_iter):
            if self.config.checkpointing and torch.is_grad_enabled():
                buffer = checkpoint(self._iteration, i, buffer, maps, rhs, enc, use_reentrant=False)
            else:
                buffer = self._iteration(i, buffer, maps, rhs, enc)
            x = buffer[:, 0]
            if i == self.config.n_iter - 1 and self.training:
                x = self._training_consistency(x, maps, rhs, enc)
            if i == self.config.n_iter - 1 and solution_out is not None:
                solution_out.append(NetworkSolution(x=x, rhs=rhs, maps=maps, scale=scale, enc=enc,
                                                    data_consistent_output=self.data_consistent_output))
            if i == self.config.n_iter - 1 and final_data_consistency:
                x = self.data_consistent_output(x, maps, scale, enc)
            if callback is not None:
                callback(i, x)
        return x, scale

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, scale = self.unrolled(batch)
        return fit_shape(x.abs(), batch.recon_shape), scale

    @torch.no_grad()
    def reconstruct(self, batch, callback: Callable[[float, str], None] | None = None,
                    iterate: Callable[[torch.Tensor], None] | None = None,
                    final_data_consistency: bool | None = None, networks: bool = True) -> torch.Tensor:
        """Complex image ``[B, H, W]`` on the grid in data units (its magnitude is the trained output).
        ``callback(fraction, text)`` reports progress once per iteration (it may raise to cancel);
        ``iterate(x)`` receives each iteration's image ``[B, H, W]`` in data units;
        ``final_data_consistency`` (``None``: as trained) ends with the data-consistency step;
        ``networks=False``: the starting image only (:meth:`unrolled`)."""
        n = self.config.n_iter
        scale_box: list[torch.Tensor] = []

        def report(i, x):
            if callback is not None:
                callback((i + 1) / n, f"iteration {i + 1}/{n}")
            if iterate is not None and scale_box:
                iterate(x * scale_box[0][:, None, None])

        if callback is not None:
            callback(0.0, "coil maps")
        x, scale = self.unrolled(batch, report, scale_box, final_data_consistency, networks)
        return x * scale[:, None, None]
