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
    # Rows s_i and p_i = s_i + y_i; only the first n rows are ever read, so the buffers stay
    # uninitialised. grams[0] = S^T P, grams[1] = S^T S (entry [i, j] pairs row i with row j).
    steps = z0.new_empty(batch, m, dim)
    sums = z0.new_empty(batch, m, dim)
    grams = torch.zeros(2, batch, m, m, dtype=torch.float64, device=z0.device)
    z = z0
    fz = f(z)
    if monitor.check(z, fz):
        return monitor.finish()
    g = fz - z
    gg = _sq(g)
    delta = gg.sqrt()
    rejected = torch.zeros_like(gg, dtype=torch.long)  # consecutive rejected steps
    n = 0
    for k in range(opts.max_iter - 1):
        radius_sq = torch.maximum(delta.square(), gg)
        step, t, inside, model_sq = _dogleg(
            g, gg, radius_sq, rejected >= PLAIN_AFTER, steps[:, :n], sums[:, :n], grams, n
        )
        z_new = z + step
        fz = f(z_new)
        if monitor.check(z_new, fz):
            break
        g_new = fz - z_new
        gg_new = _sq(g_new)
        slot = k % m
        n = min(n + 1, m)
        _remember(steps, sums, grams, slot, n, step, step + g_new - g)
        predicted = (gg - (1 - t) ** 2 * model_sq).clamp_min(torch.finfo(gg.dtype).tiny)
        ratio = (gg - gg_new) / predicted
        length = torch.linalg.vector_norm(step, dim=1)
        expand = (ratio > EXPAND_ABOVE) & ~inside
        delta = torch.where(
            ratio < SHRINK_BELOW,
            0.5 * length,
            torch.where(expand, 2 * torch.maximum(delta, length), delta),
        )
        accept = (gg_new < gg) | (step == g).all(dim=1)  # the fixed-point step always goes
        rejected = torch.where(accept, 0, rejected + 1)
        z = torch.where(accept[:, None], z_new, z)
        g = torch.where(accept[:, None], g_new, g)
        gg = torch.where(accept, gg_new, gg)
    return monitor.finish()


def _sq(x: Tensor) -> Tensor:
    """Squared norm of each row."""
    return torch.linalg.vector_norm(x, dim=1).square()


def _dogleg(
    g: Tensor,
    gg: Tensor,
    radius_sq: Tensor,
    plain: Tensor,
    s: Tensor,
    p: Tensor,
    grams: Tensor,
    n: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The step, its fraction ``t`` of the way to the quasi-Newton step (0 where ``plain``: the
    fixed-point step), whether the quasi-Newton step was taken whole, and the model's squared
    residual after the fixed-point step."""
    if n == 0:
        ones = torch.ones_like(gg)
        return g, ones, ones.bool(), torch.zeros_like(gg)
    rhs = torch.bmm(g.unsqueeze(1), s.transpose(1, 2)).transpose(1, 2).double()  # S^T g
    gram_sp, gram_ss = grams[0, :, :n, :n], grams[1, :, :n, :n]
    systems = torch.stack([gram_sp - gram_ss, gram_ss])  # S^T Y, S^T S
    coef = torch.linalg.solve_ex(systems, rhs)[0]  # inf/nan where a system is singular
    coef = coef.nan_to_num(0.0, 0.0, 0.0).to(g.dtype).squeeze(-1).transpose(0, 1)  # (B, 2, n)
    d, model = torch.bmm(coef, p).unbind(1)  # P (S^T Y)^-1 S^T g,  P (S^T S)^-1 S^T g
    d = -d  # the quasi-Newton step is g + d
    dd, gd = _sq(d), (g * d).sum(dim=1)
    inside = (gg + 2 * gd + dd <= radius_sq) & ~plain
    to_boundary = (-gd + (gd.square() + dd * (radius_sq - gg)).sqrt()) / dd
    t = torch.where(inside, 1.0, torch.where(plain, 0.0, to_boundary.clamp(0.0, 1.0)))
    return g + t[:, None] * d, t, inside, _sq(model)


def _remember(
    steps: Tensor, sums: Tensor, grams: Tensor, slot: int, n: int, s: Tensor, p: Tensor
) -> None:
    """Store the pair (s, p = s + y) in ``slot`` and update the Gram matrices' row and column."""
    steps[:, slot] = s
    sums[:, slot] = p
    new = torch.stack([s, p], dim=1)  # (B, 2, D)
    with_s = torch.bmm(new, steps[:, :n].transpose(1, 2)).double()  # [s.s_i, p.s_i]
    s_p = torch.bmm(s.unsqueeze(1), sums[:, :n].transpose(1, 2)).squeeze(1).double()  # s.p_i
    grams[1, :, slot, :n] = with_s[:, 0]
    grams[1, :, :n, slot] = with_s[:, 0]
    grams[0, :, slot, :n] = s_p
    grams[0, :, :n, slot] = with_s[:, 1]
