"""Linear operators in the style of sigpy: an object with ``forward``, ``adjoint`` and shapes.

``ishape`` / ``oshape`` are the trailing shapes of one item; any leading dimensions are batch dimensions and
pass through unchanged (``[B, *ishape] -> [B, *oshape]``). ``A.H`` is the adjoint operator and
``A.normal(x)`` applies ``A^H A``; operators with a cheaper normal form (Toeplitz NUFFT, masked FFT) override it.

Operators compose: ``A * B`` (apply B, then A), ``A + B``, ``2.0 * A``.
"""

from __future__ import annotations

from typing import Sequence

import torch


class Linop:
    """Base class. Subclasses implement :meth:`_forward` and :meth:`_adjoint` (and optionally :meth:`_normal`)."""

    def __init__(self, ishape: Sequence[int], oshape: Sequence[int]):
        self.ishape = tuple(int(s) for s in ishape)
        self.oshape = tuple(int(s) for s in oshape)

    # --- to implement -------------------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self._adjoint(self._forward(x))

    # --- public ------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the operator: ``[..., *ishape] -> [..., *oshape]``."""
        self._check(x, self.ishape, "input")
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the adjoint: ``[..., *oshape] -> [..., *ishape]``."""
        self._check(y, self.oshape, "output")
        return self._adjoint(y)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A^H A``: ``[..., *ishape] -> [..., *ishape]``."""
        self._check(x, self.ishape, "input")
        return self._normal(x)

    __call__ = forward

    @property
    def H(self) -> "Linop":
        return Adjoint(self)

    def _check(self, x: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
        n = len(shape)
        if tuple(x.shape[x.dim() - n :]) != shape or x.dim() < n:
            raise ValueError(
                f"{type(self).__name__}: {what} has shape {tuple(x.shape)}, expected [..., {', '.join(map(str, shape))}]"
            )

    def __mul__(self, other):
        if isinstance(other, Linop):
            return Compose(self, other)
        if isinstance(other, (int, float, complex)):
            return Scale(self, other)
        return NotImplemented

    def __rmul__(self, other):
        if isinstance(other, (int, float, complex)):
            return Scale(self, other)
        return NotImplemented

    def __add__(self, other):
        if isinstance(other, Linop):
            return Sum(self, other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ishape} -> {self.oshape}>"


class Adjoint(Linop):
    def __init__(self, op: Linop):
        super().__init__(op.oshape, op.ishape)
        self.op = op

    def _forward(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._forward(y)

    @property
    def H(self) -> Linop:
        return self.op


class Compose(Linop):
    """``A * B``: apply B first, then A."""

    def __init__(self, a: Linop, b: Linop):
        if a.ishape != b.oshape:
            raise ValueError(f"cannot compose {a} after {b}: shapes differ")
        super().__init__(b.ishape, a.oshape)
        self.a, self.b = a, b

    def _forward(self, x):
        return self.a._forward(self.b._forward(x))

    def _adjoint(self, y):
        return self.b._adjoint(self.a._adjoint(y))


class Sum(Linop):
    def __init__(self, a: Linop, b: Linop):
        if a.ishape != b.ishape or a.oshape != b.oshape:
            raise ValueError(f"cannot add {a} and {b}: shapes differ")
        super().__init__(a.ishape, a.oshape)
        self.a, self.b = a, b

    def _forward(self, x):
        return self.a._forward(x) + self.b._forward(x)

    def _adjoint(self, y):
        return self.a._adjoint(y) + self.b._adjoint(y)


class Scale(Linop):
    def __init__(self, op: Linop, alpha: complex):
        super().__init__(op.ishape, op.oshape)
        self.op, self.alpha = op, alpha

    def _forward(self, x):
        return self.alpha * self.op._forward(x)

    def _adjoint(self, y):
        alpha = self.alpha.conjugate() if isinstance(self.alpha, complex) else self.alpha
        return alpha * self.op._adjoint(y)

    def _normal(self, x):
        return abs(self.alpha) ** 2 * self.op._normal(x)


class Identity(Linop):
    def __init__(self, shape: Sequence[int]):
        super().__init__(shape, shape)

    def _forward(self, x):
        return x

    def _adjoint(self, y):
        return y


class Multiply(Linop):
    """Pointwise multiplication by a fixed tensor ``w`` broadcast against ``ishape``; ``oshape`` follows
    broadcasting (for example coil maps ``[C, H, W]`` times an image ``[H, W]`` give ``[C, H, W]``)."""

    def __init__(self, ishape: Sequence[int], w: torch.Tensor):
        oshape = torch.broadcast_shapes(tuple(ishape), tuple(w.shape))
        super().__init__(ishape, oshape)
        self.w = w
        self._sum_dims = len(oshape) - len(tuple(ishape))

    def _forward(self, x):
        if self._sum_dims:  # leading batch dims of x must not meet the extra dims of w
            n = len(self.ishape)
            x = x.reshape(*x.shape[: x.dim() - n], *([1] * self._sum_dims), *self.ishape)
        return x * self.w

    def _adjoint(self, y):
        z = y * (self.w.conj() if self.w.is_complex() else self.w)
        if self._sum_dims:
            z = z.sum(dim=tuple(range(-len(self.oshape), -len(self.oshape) + self._sum_dims)))
        return z


def adjointness_error(op: Linop, *, batch: tuple[int, ...] = (), device="cpu", seed: int = 0) -> float:
    """Relative error of the dot-product test ``<A x, y> = <x, A^H y>`` for random complex x, y."""
    g = torch.Generator(device="cpu").manual_seed(seed)

    def rand(shape):
        re = torch.randn(*batch, *shape, generator=g)
        im = torch.randn(*batch, *shape, generator=g)
        return torch.complex(re, im).to(device)

    x, y = rand(op.ishape), rand(op.oshape)
    lhs = torch.vdot(op.forward(x).reshape(-1), y.reshape(-1))
    rhs = torch.vdot(x.reshape(-1), op.adjoint(y).reshape(-1))
    return float(abs(lhs - rhs) / max(abs(lhs), 1e-30))
