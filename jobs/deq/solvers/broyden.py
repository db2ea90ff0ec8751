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
``MEMORY1_MAX_STRETCH`` (6) times as long as the fixed-point step, and takes the fixed-point step
otherwise: one pair that sees only the slowest mode (a Rayleigh quotient of ``df/dz`` near 1)
proposes a step 10-20 times the fixed-point one, which the trust region then cuts down or
rejects, costing evaluations plain iteration would not have spent.

Cost per step: one evaluation of ``f`` and a constant number of tensor operations, whatever the
memory: the new pair and residual are written into one buffer, one batched product gives all
their inner products with the window, and everything else (the two ``m x m`` systems, the
dogleg, the radius) works on the ``2m x 2m`` Gram matrix of the window, per sample, in float64
on the host, in loops compiled by Numba (:mod:`jobs.deq.solvers._trust_region`; one call per
step takes in the new inner products and computes the next step; the systems go to LAPACK above
``COMPILED_SOLVE_UP_TO`` pairs). On the CPU the loops read the products and write the step's
``m`` coefficients per sample in place, in tensors' memory. Non-finite coefficients of a
singular system are zeroed (the trust region bounds whatever step results). The compiled loops
are built on first use and cached on disk beside the module (~7 s once per installation, then
~0.5 s in each new process).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from jobs.deq.solvers._base import Func, Monitor, SolverOptions, SolverStats

Array = NDArray[np.float64]
COMPILED_SOLVE_UP_TO = 32  # window sizes solved by the compiled elimination; LAPACK above
HOST_DTYPES = (torch.float32, torch.float64)  # the step's coefficients are computed in these


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
    g = fz - z
    rows[:, cur] = g
    # the step's coefficients: written on the host by the trust region, read by torch
    host_dtype = z0.dtype if z0.dtype in HOST_DTYPES else torch.float32
    weights = torch.empty(batch, 1, m, dtype=host_dtype)
    state = _TrustRegion(g.double().square().sum(1).cpu().numpy(), m, weights)
    on_host = z0.device.type == "cpu" and host_dtype == z0.dtype
    # the inner products of a new pair's rows s, p and new residual with every row; on the
    # CPU the trust region reads them in place
    products = z0.new_empty(batch, 3, 2 * m + 2)
    host_products = products.numpy() if on_host else None
    # views of every row, made once: as (B, D) and as (B, 1, D)
    row, row_views = rows.unbind(1), rows.split(1, dim=1)
    rows_t = rows.mT
    picks = _picks(m, z0.device)
    step_out = z0.new_empty(batch, 1, dim)  # contiguous: baddbmm into a row view is 5x slower
    n_window = 0
    for k in range(opts.max_iter - 1):
        slot, new = k % m, 4 * m + 1 - cur
        n = state.step()
        g, s = row[cur], row[slot]
        if n:
            if n != n_window:  # views of the first n coefficients and rows p_i, made as n grows
                n_window, w_n, p_n = n, weights[:, :, :n], rows[:, m : m + n]
            w = w_n if on_host else w_n.to(device=z.device, dtype=z.dtype)
            row_views[slot].copy_(torch.baddbmm(row_views[cur], w, p_n, alpha=-1, out=step_out))
        else:
            s.copy_(g)
        z_new = z + s
        fz = f(z_new)
        g_new = torch.sub(fz, z_new, out=row[new])
        if monitor.check(z_new, fz, g_new):
            break
        torch.sub(g_new, g, out=row[m + slot]).add_(s)  # p = s + y
        torch.bmm(rows.index_select(1, picks[2 * slot + new - 2 * m]), rows_t, out=products)
        if host_products is None:  # to the host as float64 or float32 (NumPy has no bfloat16)
            accept = state.update(slot, products.to("cpu", host_dtype).numpy(), new, cur)
        else:
            accept = state.update(slot, host_products, new, cur)
        if accept is None:
            z, cur = z_new, new
        else:
            keep = torch.from_numpy(accept).to(z.device)[:, None]
            z = torch.where(keep, z_new, z)
            torch.where(keep, g_new, g, out=row[new])
            cur = new
    return monitor.finish()


@functools.lru_cache(maxsize=64)
def _picks(m: int, device: torch.device) -> tuple[Tensor, ...]:
    """Which rows to take inner products of after a step into slot ``slot`` with the new
    residual in row ``new``: s and p of the slot and the residual, at ``2 * slot + new - 2m``."""
    pairs = [[slot, m + slot, new] for slot in range(m) for new in (2 * m, 2 * m + 1)]
    return torch.tensor(pairs, device=device).unbind(0)


class _TrustRegion:
    """The window's Gram matrix and the dogleg's per-sample state, in float64 on the host; the
    arithmetic runs in :mod:`jobs.deq.solvers._trust_region`'s compiled loops, which write each
    step's coefficients into ``weights`` ``(B, 1, m)``."""

    def __init__(self, gg: Array, m: int, weights: Tensor) -> None:
        # imported here: importing Numba takes ~0.2 s, which only Broyden's users should pay
        from jobs.deq.solvers import _trust_region

        self.compiled = _trust_region
        batch = gg.shape[0]
        self.m, self.n = m, 0
        self.gram = np.zeros((batch, 2 * m, 2 * m))  # of the rows s_1..s_m, p_1..p_m
        self.proj = np.zeros((batch, 2 * m))  # their inner products with the current g
        # |g|^2, the squared radius, consecutive rejections; the step being tried: its fraction
        # t of the quasi-Newton correction, whether that was whole, and the model's squared
        # residual after the fixed-point step (updated in place by the compiled loops)
        self.state = (
            gg,
            gg.copy(),
            np.zeros(batch, dtype=np.int64),
            np.zeros(batch),
            np.zeros(batch, dtype=bool),
            np.zeros(batch),
        )
        self.accept = np.ones(batch, dtype=bool)
        self.coef = np.zeros((batch, 2, min(m, COMPILED_SOLVE_UP_TO)))
        self.weights = weights.numpy()[:, 0]

    def step(self) -> int:
        """The dogleg: the coefficients ``w`` of the step ``g - P w`` in ``weights[:, :n]``;
        returns ``n`` (0: the first step, ``g`` itself). Up to ``COMPILED_SOLVE_UP_TO`` pairs
        :meth:`update` has written them already."""
        m, n = self.m, self.n
        if n > COMPILED_SOLVE_UP_TO:  # a window past the compiled solve: LAPACK's
            gram_ss = self.gram[:, :n, :n]
            systems = np.stack([self.gram[:, :n, m : m + n] - gram_ss, gram_ss], axis=1)
            coef = _solve(systems, np.repeat(self.proj[:, None, :n, None], 2, axis=1))
            self.compiled.dogleg(self.gram, self.proj, coef, m, n, self.state, self.weights)
        return n

    def update(
        self, slot: int, products: NDArray[np.floating], new: int, cur: int
    ) -> NDArray[np.bool_] | None:
        """Take in the inner products of the new pair's rows s, p and of the trial point's
        residual with every row; return which samples accept the step, or None when all do.
        Up to ``COMPILED_SOLVE_UP_TO`` pairs the next step is computed in the same call."""
        args = (products, slot, new, cur, self.m, self.gram, self.proj, self.state, self.accept)
        self.n = n = min(self.n + 1, self.m)
        if n <= COMPILED_SOLVE_UP_TO:
            everyone = self.compiled.take_in_and_step(*args, n, self.coef, self.weights)
        else:
            everyone = self.compiled.take_in(*args)
        return None if everyone else self.accept.copy()


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
