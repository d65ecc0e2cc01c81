"""Conjugate gradient for Hermitian positive (semi-)definite systems, batched over leading dimensions."""

from __future__ import annotations

import torch

from workbench.solvers.base import (
    Callback,
    NormalOp,
    SolverResult,
    as_tensor_like,
    call_callback,
    infer_item_ndim,
    per_item,
    real_dot,
    sq_norm,
)


def conjugate_gradient(
    normal_op: NormalOp,
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    *,
    n_iter: int = 50,
    tol: float = 1e-6,
    lam: float | torch.Tensor = 0.0,
    item_ndim: int | None = None,
    callback: Callback | None = None,
) -> SolverResult:
    """Solve ``(N + lam I) x = rhs`` with ``N`` Hermitian positive semi-definite (typically ``A^H A``).

    CG-SENSE / CGNR with Tikhonov weight ``lam``: ``conjugate_gradient(A.normal, A.H(y), lam=lam)`` solves
    ``min_x ||A x - y||^2 + lam ||x||^2``.

    Args:
        normal_op: callable ``x -> N x`` (``A.normal``, a square Linop, or any function) on ``[*batch, *item]``.
        rhs: right-hand side ``[*batch, *item]``, real or complex.
        x0: starting point (warm start); zeros by default. Not modified.
        n_iter: maximum number of iterations.
        tol: stop when every item's relative residual ``||rhs - (N + lam) x|| / ||rhs||`` is ``<= tol``
            (items that converge early are frozen). ``0`` runs all ``n_iter`` iterations without per-iteration
            synchronisation (useful inside unrolled networks).
        lam: Tikhonov weight, a float or a per-item tensor of shape ``batch``.
        item_ndim: trailing dimensions forming one item; inferred from a Linop (or ``A.normal``), else the
            whole tensor is one item.
        callback: ``callback(it, x, {"residual": float})``; returning True stops.

    Returns:
        :class:`SolverResult` with ``history`` = relative residual norm of the whole batch after each
        iteration, ``info["residual_items"]`` the final per-item relative residuals.

    Differentiable with respect to its inputs (no ``no_grad`` inside): usable as a data-consistency layer.
    """
    nd = item_ndim if item_ndim is not None else infer_item_ndim(normal_op, rhs.dim())
    lam_t = per_item(lam, nd) if isinstance(lam, torch.Tensor) else float(lam)
    has_lam = isinstance(lam_t, torch.Tensor) or lam_t != 0.0

    def apply(v: torch.Tensor) -> torch.Tensor:
        out = normal_op(v)
        return out + lam_t * v if has_lam else out

    bb = sq_norm(rhs, nd)
    if x0 is None:
        x = torch.zeros_like(rhs)
        r = rhs
    else:
        x = x0
        r = rhs - apply(x0)
    p = r
    rr = sq_norm(r, nd)
    b_total = bb.sum().sqrt().clamp_min(torch.finfo(bb.dtype).tiny)
    b_items = bb.sqrt().clamp_min(torch.finfo(bb.dtype).tiny)
    tol_t = as_tensor_like(tol, bb)
    floor_t = as_tensor_like(max(float(tol), 4 * torch.finfo(bb.dtype).eps), bb)

    residuals: list[torch.Tensor] = []
    converged = stopped = False
    done = 0
    active = torch.ones_like(bb, dtype=torch.bool) if tol <= 0 else (rr.sqrt() / b_items) > tol_t
    if tol > 0 and not bool(active.any()):
        return SolverResult(x, [], "residual", 0, True, False, {"residual_items": (rr.sqrt() / b_items).reshape(-1).tolist()})
    for it in range(n_iter):
        ap = apply(p)
        pap = real_dot(p, ap, nd)
        alpha = torch.where(active & (pap > 0), rr / torch.where(pap > 0, pap, torch.ones_like(pap)), torch.zeros_like(rr))
        x = x + per_item(alpha, nd) * p
        r = r - per_item(alpha, nd) * ap
        rr_new = sq_norm(r, nd)
        beta = torch.where(rr > 0, rr_new / torch.where(rr > 0, rr, torch.ones_like(rr)), torch.zeros_like(rr))
        p = r + per_item(beta, nd) * p
        rr = torch.where(active, rr_new, rr)
        done = it + 1
        residuals.append(rr.sum().sqrt() / b_total)
        # Items whose residual reached the precision floor are frozen even with tol=0: past it, CG loses
        # orthogonality and drifts away from the solution. Tensor ops only, so tol=0 still never syncs.
        active = active & ((rr.sqrt() / b_items) > floor_t)
        if tol > 0:
            converged = not bool(active.any())
        if callback is not None:
            stopped = call_callback(callback, it, x, {"residual": float(residuals[-1])})
        if converged or stopped:
            break
    history = torch.stack(residuals).tolist() if residuals else []
    return SolverResult(
        x, history, "residual", done, converged, stopped, {"residual_items": (rr.sqrt() / b_items).reshape(-1).tolist()}
    )


def shifted_conjugate_gradient(normal_op: NormalOp, rhs: torch.Tensor, shifts, n_iter: int = 20
                               ) -> dict[float, torch.Tensor]:
    """Solve ``(N + s I) x_s = rhs`` for every shift ``s >= 0`` of ``shifts`` at the cost of one CG run (one
    ``N`` per iteration): the multi-shift CG of Jegerlehner (hep-lat/9612014), from ``x_s = 0``.

    The Krylov spaces ``K_n(N + s I, rhs)`` do not depend on ``s``, so the residuals of the shifted systems are
    collinear with the base system's (the smallest shift), ``r_n^s = r_n / zeta_n^s`` with ``zeta_n^s =
    pi_n(-(s - s_0))``, ``pi_n`` the base run's residual polynomial, from the three-term recurrence of CG's
    coefficients. Each ``x_s`` after ``n`` iterations is what :func:`conjugate_gradient` with ``lam=s`` and
    ``x0=0`` gives after ``n`` (in exact arithmetic). The whole tensor is one system (inner products over all of
    it). Returns ``{s: x_s}``."""
    shifts = [float(s) for s in shifts]
    if not shifts or min(shifts) < 0:
        raise ValueError(f"shifts must be non-empty and >= 0, got {shifts}")
    base = min(shifts)
    x = {s: torch.zeros_like(rhs) for s in shifts}
    p = {s: rhs for s in shifts}
    zeta = {s: 1.0 for s in shifts}  # zeta_n
    zeta_prev = {s: 1.0 for s in shifts}  # zeta_{n-1}
    r, p_base = rhs, rhs
    rr = float(sq_norm(rhs, rhs.dim()))
    alpha_prev, beta_prev = 1.0, 0.0
    # stop at the precision floor (past it CG loses orthogonality and drifts, as in conjugate_gradient)
    floor = (4 * torch.finfo(rhs.dtype).eps) ** 2 * rr
    for _ in range(n_iter):
        if rr <= floor or rr == 0:
            break
        ap = normal_op(p_base) + base * p_base
        pap = float(real_dot(p_base, ap, rhs.dim()))
        if pap <= 0:
            break
        alpha = rr / pap
        r = r - alpha * ap
        rr_new = float(sq_norm(r, rhs.dim()))
        beta = rr_new / rr
        for s in shifts:
            # pi_{n+1}(t) = (1 + a_n b_{n-1} / a_{n-1} - a_n t) pi_n(t) - (a_n b_{n-1} / a_{n-1}) pi_{n-1}(t)
            c = alpha * beta_prev / alpha_prev
            z_next = (1 + c + alpha * (s - base)) * zeta[s] - c * zeta_prev[s]
            x[s] = x[s] + (alpha * zeta[s] / z_next) * p[s]
            p[s] = r / z_next + (beta * (zeta[s] / z_next) ** 2) * p[s]
            zeta_prev[s], zeta[s] = zeta[s], z_next
        p_base = r + beta * p_base
        rr, alpha_prev, beta_prev = rr_new, alpha, beta
    return x
