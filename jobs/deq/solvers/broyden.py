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

With one pair (memory 1) a sample tries the quasi-Newton step only while it is at most
``MEMORY1_MAX_STRETCH`` times as long as the fixed-point step, and takes the fixed-point step
otherwise: one pair that sees only the slowest mode (a Rayleigh quotient of ``df/dz`` near 1)
proposes a step 10-20 times the fixed-point one, which the trust region then cuts down or
rejects, costing evaluations plain iteration would not have spent.

Cost per step: one evaluation of ``f`` and a constant number of tensor operations, whatever the
memory: the new pair and residual are written into one buffer, one batched product gives all
their inner products with the window, and everything else (the two ``m x m`` systems, the
dogleg, the radius) works on the ``2m x 2m`` Gram matrix of the window, per sample, in float64
NumPy on the host. The step comes back as ``m`` coefficients per sample. Non-finite
coefficients of a singular system are zeroed (the trust region bounds whatever step results).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from jobs.deq.solvers._base import Func, Monitor, SolverOptions, SolverStats

PLAIN_AFTER = 2  # consecutive rejected steps after which the fixed-point step is taken
SHRINK_BELOW = 0.5  # actual / predicted decrease under which the radius halves
EXPAND_ABOVE = 0.9  # ... over which a step that hit the boundary doubles it

MEMORY1_MAX_STRETCH = 6.0  # memory 1: longest quasi-Newton step tried, in fixed-point steps

Array = NDArray[np.float64]
TINY = np.finfo(np.float64).tiny


def broyden(f: Func, z0: Tensor, opts: SolverOptions) -> tuple[Tensor, SolverStats]:
    """Broyden's method keeping the last ``opts.memory`` secant pairs, with a trust region."""
    monitor = Monitor(z0, opts, "broyden")
    batch, dim = z0.shape
    m = min(opts.memory, opts.max_iter)
    # Rows 0..m-1: the steps s_i; m..2m-1: p_i = s_i + y_i; 2m and 2m+1: the residual at the
    # current point and at the trial point (they swap roles when a step is accepted).
    rows = z0.new_zeros(batch, 2 * m + 2, dim)
    z = z0
    fz = f(z)
    if monitor.check(z, fz):
        return monitor.finish()
    cur = 2 * m
    torch.sub(fz, z, out=rows[:, cur])
    state = _TrustRegion(rows[:, cur].detach().double().square().sum(1).cpu().numpy(), m)
    picks = {
        (slot, c): torch.tensor([slot, m + slot, 4 * m + 1 - c], device=z0.device)
        for slot in range(m)
        for c in (2 * m, 2 * m + 1)
    }
    for k in range(opts.max_iter - 1):
        slot, new = k % m, 4 * m + 1 - cur
        n, coef = state.step()
        g = rows[:, cur]
        if n:
            weights = torch.from_numpy(coef).to(device=z.device, dtype=z.dtype)
            step = torch.baddbmm(
                g.unsqueeze(1), weights.unsqueeze(1), rows[:, m : m + n], alpha=-1
            ).squeeze(1)
        else:
            step = g.clone()
        z_new = z + step
        fz = f(z_new)
        if monitor.check(z_new, fz):
            break
        g_new = torch.sub(fz, z_new, out=rows[:, new])
        rows[:, slot] = step
        torch.sub(g_new, g, out=rows[:, m + slot]).add_(step)  # p = s + y
        picked = rows.index_select(1, picks[slot, cur])
        products = torch.bmm(picked, rows.mT).detach().cpu().numpy().astype(np.float64)
        accept = state.update(slot, products, new, cur)
        if accept is None:
            z, cur = z_new, new
        else:
            keep = torch.from_numpy(accept).to(z.device)[:, None]
            z = torch.where(keep, z_new, z)
            torch.where(keep, g_new, g, out=rows[:, new])
            cur = new
    return monitor.finish()


class _TrustRegion:
    """The window's Gram matrix and the dogleg's per-sample state, in float64 on the host."""

    def __init__(self, gg: Array, m: int) -> None:
        batch = gg.shape[0]
        self.m, self.n = m, 0
        self.gram = np.zeros((batch, 2 * m, 2 * m))  # of the rows s_1..s_m, p_1..p_m
        self.proj = np.zeros((batch, 2 * m))  # their inner products with the current g
        self.gg, self.delta_sq = gg, gg.copy()
        self.rejected = np.zeros(batch, dtype=np.int64)
        # the step being tried: its fraction t of the quasi-Newton correction, whether that was
        # whole, and the model's squared residual after the fixed-point step
        self.t = np.zeros(batch)
        self.inside = np.zeros(batch, dtype=bool)
        self.model_sq = np.zeros(batch)

    def step(self) -> tuple[int, Array]:
        """The dogleg: ``n`` and the coefficients ``w`` of the step ``g - P w``."""
        m, n, gg = self.m, self.n, self.gg
        if n == 0:
            return 0, self.t[:, None]
        gram_ss = self.gram[:, :n, :n]
        systems = np.stack([self.gram[:, :n, m : m + n] - gram_ss, gram_ss], axis=1)
        rhs = np.repeat(self.proj[:, None, :n, None], 2, axis=1)  # S^T g for S^T Y and S^T S
        coef = _solve(systems, rhs)  # (B, 2, n): e = P coef[0] (the quasi-Newton step is
        # g - e), model = P coef[1]
        quad = coef @ self.gram[:, m : m + n, m : m + n] @ coef.transpose(0, 2, 1)
        ee, model_sq = quad[:, 0, 0], quad[:, 1, 1]
        ge = (coef[:, 0] * self.proj[:, m : m + n]).sum(1)
        radius_sq = np.maximum(self.delta_sq, gg)
        newton_sq = gg - 2 * ge + ee  # |g - e|^2
        plain = (self.rejected >= PLAIN_AFTER) | ~(ee > 0)
        if m == 1:
            plain |= newton_sq > MEMORY1_MAX_STRETCH**2 * gg
        inside = (newton_sq <= radius_sq) & ~plain
        with np.errstate(divide="ignore", invalid="ignore"):
            to_boundary = (ge + np.sqrt(np.maximum(ge**2 + ee * (radius_sq - gg), 0.0))) / ee
        t = np.where(inside, 1.0, np.where(plain, 0.0, to_boundary.clip(0.0, 1.0)))  # ee > 0
        self.t, self.inside, self.model_sq = t, inside, model_sq
        return n, t[:, None] * coef[:, 0]

    def update(self, slot: int, products: Array, new: int, cur: int) -> NDArray[np.bool_] | None:
        """Take in the inner products of the new pair's rows s, p and of the trial point's
        residual with every row; return which samples accept the step, or None when all do."""
        m = self.m
        s_row, p_row = products[:, 0, : 2 * m], products[:, 1, : 2 * m]
        self.gram[:, slot], self.gram[:, :, slot] = s_row, s_row
        self.gram[:, m + slot], self.gram[:, :, m + slot] = p_row, p_row
        self.n = min(self.n + 1, m)
        gg, gg_new, t = self.gg, products[:, 2, new], self.t
        length_sq = products[:, 0, slot]
        predicted = np.maximum(gg - (1 - t) ** 2 * self.model_sq, TINY)
        with np.errstate(over="ignore"):
            ratio = (gg - gg_new) / predicted
        grown = np.where(
            (ratio > EXPAND_ABOVE) & ~self.inside,
            4 * np.maximum(self.delta_sq, length_sq),
            self.delta_sq,
        )
        self.delta_sq = np.where(ratio < SHRINK_BELOW, 0.25 * length_sq, grown)
        accept = (gg_new < gg) | (t == 0)  # the fixed-point step (t = 0) always goes
        self.rejected = (self.rejected + 1) * ~accept
        if accept.all():
            self.gg, self.proj = gg_new, products[:, 2, : 2 * m]
            return None
        old = self.proj.copy()
        old[:, [slot, m + slot]] = products[:, :2, cur]  # s . g, p . g at the current point
        self.gg = np.where(accept, gg_new, gg)
        self.proj = np.where(accept[:, None], products[:, 2, : 2 * m], old)
        return accept


def _solve(systems: Array, rhs: Array) -> Array:
    """``systems^-1 rhs`` per matrix (rhs ``(..., n, 1)``), as ``(..., n)``; zeros where a
    system is singular or the solution is not finite."""
    try:
        out = np.linalg.solve(systems, rhs)[..., 0]
        if np.isfinite(out).all():
            return out
    except np.linalg.LinAlgError:
        out = np.zeros(rhs.shape[:-1])
        for index in np.ndindex(systems.shape[:-2]):
            with contextlib.suppress(np.linalg.LinAlgError):
                out[index] = np.linalg.solve(systems[index], rhs[index])[:, 0]
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
