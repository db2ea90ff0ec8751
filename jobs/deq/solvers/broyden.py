"""Limited-memory multisecant Broyden with a dogleg trust region, on g(z) = f(z) - z.

Memory is a sliding window of the last ``m`` secant pairs: steps ``s_i`` and changes of the
residual ``y_i``; when it is full the oldest pair is dropped. The inverse-Jacobian estimate

    H = -I + (S + Y) (S^T Y)^{-1} S^T,   its inverse   B = -I + (S + Y) (S^T S)^{-1} S^T,

satisfies every secant equation ``H y_i = s_i`` of the window: it is the multiple-secant "good"
Broyden update of -I (Gay & Schnabel 1978; with one pair, Broyden's first update; the same step
as Type-I Anderson acceleration), so it stays a quasi-Newton matrix whichever pairs were dropped.

Each step runs from the fixed-point step ``g`` towards the quasi-Newton step ``-H g``, as far as
the radius ``max(delta, |g|)`` allows (Powell's dogleg with the fixed-point step in place of the
Cauchy step). The secant model predicts the residual ``(1 - t) |(S + Y)(S^T S)^{-1} S^T g|`` at
the fraction ``t`` of the way; the radius halves when the actual decrease of ``|g|^2`` is below
half the predicted one and doubles when it is above 0.9 of it at the boundary. A step that does
not decrease ``|g|`` is rejected: its pair is kept and the next step starts from the old point.
After two rejections in a row the fixed-point step is taken, and it is always accepted (``|g|``
may grow under plain iteration too when ``df/dz`` is not normal): the solver cannot stall where
plain iteration would move on.
Both small systems are solved in float64 (non-finite coefficients of a singular system are
zeroed; the trust region bounds whatever step results). Cost per step: one evaluation, O(m D)
and two m x m solves.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jobs.deq.solvers._base import Func, Monitor, SolverOptions, SolverStats

PLAIN_AFTER = 2  # consecutive rejected steps after which the fixed-point step is taken
SHRINK_BELOW = 0.5  # actual / predicted decrease under which the radius halves
EXPAND_ABOVE = 0.9  # ... over which a step that hit the boundary doubles it


def broyden(f: Func, z0: Tensor, opts: SolverOptions) -> tuple[Tensor, SolverStats]:
    """Broyden's method keeping the last ``opts.memory`` secant pairs, with a trust region."""
    monitor = Monitor(z0, opts, "broyden")
    batch, dim = z0.shape
    m = min(opts.memory, opts.max_iter)
    # Rows 0..m-1 hold the steps s_i, rows m..2m-1 the sums p_i = s_i + y_i; rows not yet written
    # are never read, so the buffer stays uninitialised. grams[:, i, j] = s_i . s_j for j < m and
    # s_i . p_(j-m) for j >= m.
    pairs = z0.new_empty(batch, 2 * m, dim)
    grams = torch.zeros(batch, m, 2 * m, dtype=torch.float64, device=z0.device)
    z = z0
    fz = f(z)
    if monitor.check(z, fz):
        return monitor.finish()
    g = fz - z
    gg = torch.linalg.vecdot(g, g)
    delta = gg.sqrt()
    rejected = torch.zeros_like(gg)  # consecutive rejected steps
    n = 0
    for k in range(opts.max_iter - 1):
        radius_sq = torch.maximum(delta.square(), gg)
        step, t, inside, model_sq = _dogleg(
            g, gg, radius_sq, rejected >= PLAIN_AFTER, pairs, grams, n, m
        )
        z_new = z + step
        fz = f(z_new)
        if monitor.check(z_new, fz):
            break
        g_new = fz - z_new
        gg_new = torch.linalg.vecdot(g_new, g_new)
        _remember(pairs, grams, k % m, step, step + g_new - g)
        n = min(n + 1, m)
        predicted = (gg - (1 - t).square() * model_sq).clamp_min(torch.finfo(gg.dtype).tiny)
        ratio = (gg - gg_new) / predicted
        length = torch.linalg.vector_norm(step, dim=1)
        grown = torch.where(
            (ratio > EXPAND_ABOVE) & ~inside, 2 * torch.maximum(delta, length), delta
        )
        delta = torch.where(ratio < SHRINK_BELOW, 0.5 * length, grown)
        accept = (gg_new < gg) | (t == 0)  # the fixed-point step (t = 0) always goes
        rejected = (rejected + 1) * ~accept
        if not bool(accept.all()):
            z_new = torch.where(accept[:, None], z_new, z)
            g_new = torch.where(accept[:, None], g_new, g)
            gg_new = torch.where(accept, gg_new, gg)
        z, g, gg = z_new, g_new, gg_new
    return monitor.finish()


def _dogleg(
    g: Tensor,
    gg: Tensor,
    radius_sq: Tensor,
    plain: Tensor,
    pairs: Tensor,
    grams: Tensor,
    n: int,
    m: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The step ``g - t e`` (``g - e`` is the quasi-Newton step), ``t`` (0 where ``plain`` or
    where there is no quasi-Newton correction: the fixed-point step), whether the quasi-Newton
    step was taken whole, and the model's squared residual after the fixed-point step."""
    if n == 0:
        return g, torch.zeros_like(gg), torch.zeros_like(plain), torch.zeros_like(gg)
    rhs = torch.bmm(g.unsqueeze(1), pairs[:, :n].mT).mT.double()  # S^T g
    gram_ss, gram_sp = grams[:, :n, :n], grams[:, :n, m : m + n]
    systems = torch.stack([gram_sp - gram_ss, gram_ss])  # S^T Y, S^T S
    coef = torch.linalg.solve_ex(systems, rhs)[0]  # inf/nan where a system is singular
    coef = coef.nan_to_num(0.0, 0.0, 0.0).to(g.dtype).squeeze(-1).transpose(0, 1)  # (B, 2, n)
    # e = P (S^T Y)^-1 S^T g (the quasi-Newton step is g - e), model = P (S^T S)^-1 S^T g
    e, model = torch.bmm(coef, pairs[:, m : m + n]).unbind(1)
    ee, ge = torch.linalg.vecdot(e, e), torch.linalg.vecdot(g, e)
    inside = (gg - 2 * ge + ee <= radius_sq) & ~plain
    to_boundary = (ge + (ge.square() + ee * (radius_sq - gg)).sqrt()) / ee
    t = torch.where(inside, 1.0, torch.where(plain, 0.0, to_boundary.clamp(0.0, 1.0)))
    t = t * (ee > 0)  # no correction: the fixed-point step
    return torch.addcmul(g, t[:, None], e, value=-1), t, inside, torch.linalg.vecdot(model, model)


def _remember(pairs: Tensor, grams: Tensor, slot: int, s: Tensor, p: Tensor) -> None:
    """Store the pair (s, p = s + y) in ``slot`` and update that row and those columns of the
    Gram matrix (entries of rows not yet written are garbage and never read)."""
    m = grams.shape[1]
    pairs[:, slot] = s
    pairs[:, m + slot] = p
    products = torch.bmm(torch.stack([s, p], dim=1), pairs.mT).double()  # (B, 2, 2m)
    grams[:, slot] = products[:, 0]
    grams[:, :, slot] = products[:, 0, :m]
    grams[:, :, m + slot] = products[:, 1, :m]
