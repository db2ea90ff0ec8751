"""Limited-memory ("good") Broyden on g(z) = f(z) - z.

The inverse Jacobian of ``g`` is approximated as ``B = -I + U V^T``; each step is
``z <- z - B g(z)`` (the first is a plain fixed-point step) and ``B`` gets the Sherman-Morrison
update of Broyden's first method, ``u = (dz - B dg) / (dz^T B dg)``, ``v = B^T dz``. Once
``memory`` rank-one terms are stored, ``B`` restarts from ``-I`` (like restarted GMRES): dropping
only the oldest term leaves a matrix that no Broyden update produced, which diverges on hard
problems. Updates whose denominator vanishes (a converged sample) are skipped.
Cost per step: one evaluation plus O(m D).
"""

from __future__ import annotations

import torch
from torch import Tensor

from jobs.deq.solvers._base import Func, Monitor, SolverOptions, SolverStats


def broyden(f: Func, z0: Tensor, opts: SolverOptions) -> tuple[Tensor, SolverStats]:
    """Broyden's method with at most ``opts.memory`` rank-one updates between restarts."""
    monitor = Monitor(z0, opts, "broyden")
    batch, dim = z0.shape
    m = min(opts.memory, opts.max_iter)
    # Rows u_i, v_i (row-vector products are bmm's fast path); only the first n are ever read,
    # so the buffers stay uninitialised: a long memory costs nothing until it is used.
    us = z0.new_empty(batch, m, dim)
    vs = z0.new_empty(batch, m, dim)
    tiny = torch.finfo(z0.dtype).tiny ** 0.5
    z = z0
    fz = f(z)
    if monitor.check(z, fz):
        return monitor.finish()
    g = fz - z
    n = 0  # rank-one terms in use
    for _ in range(opts.max_iter - 1):
        u_n, v_n = us[:, :n], vs[:, :n]
        step = g - _low_rank(g, v_n, u_n)  # -B g
        z_new = z + step
        fz = f(z_new)
        if monitor.check(z_new, fz):
            break
        g_new = fz - z_new
        dz, dg = step, g_new - g
        b_dg = _low_rank(dg, v_n, u_n) - dg
        bt_dz = _low_rank(dz, u_n, v_n) - dz
        denom = (bt_dz * dg).sum(dim=1, keepdim=True)
        ok = denom.abs() > tiny
        if n == m:
            n = 0
        us[:, n] = torch.where(ok, (dz - b_dg) / torch.where(ok, denom, 1.0), 0.0)
        vs[:, n] = bt_dz
        n += 1
        z, g = z_new, g_new
    return monitor.finish()


def _low_rank(x: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """``sum_i (left_i . x) right_i`` per sample, for rows ``left``, ``right`` of (B, n, D)."""
    coeffs = torch.bmm(x.unsqueeze(1), left.transpose(1, 2))
    return torch.bmm(coeffs, right).squeeze(1)
