"""Anderson acceleration (type II) with a regularised, bordered least-squares step.

With ``G = [g_1 .. g_n]`` the last ``n <= m`` residuals ``g_i = f(x_i) - x_i``, the weights solve
``min ||G a||`` subject to ``sum(a) = 1``; their KKT system is the ``(n+1) x (n+1)`` bordered

    [ 0   1^T        ] [nu]   [1]
    [ 1   G^T G + rI ] [a ] = [0],   r = lam * max_i (G^T G)_ii

solved per sample in float64. Scaling ``r`` with the Gram matrix keeps the step scale-free: an
absolute regularisation swamps ``G^T G`` once residuals are small and turns the step into plain
averaging. The Gram matrix is updated one row per iteration (O(m D)), not rebuilt.
The next iterate mixes ``x_{k+1} = sum a_i x_i + beta * sum a_i g_i``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jobs.deq.solvers._base import Func, Monitor, SolverOptions, SolverStats


def anderson(f: Func, z0: Tensor, opts: SolverOptions) -> tuple[Tensor, SolverStats]:
    """Anderson acceleration: memory ``opts.memory``, mixing ``beta``, regulariser ``lam``."""
    monitor = Monitor(z0, opts, "anderson")
    batch, dim = z0.shape
    m = min(opts.memory, opts.max_iter)
    xs = z0.new_empty(batch, m, dim)  # only the first n rows are ever read
    gs = z0.new_empty(batch, m, dim)
    gram = torch.zeros(batch, m, m, dtype=torch.float64, device=z0.device)
    # the bordered KKT matrix, its lower right block rewritten each step
    system = torch.zeros(batch, m + 1, m + 1, dtype=torch.float64, device=z0.device)
    system[:, 0, 1:] = 1.0
    system[:, 1:, 0] = 1.0
    rhs = torch.zeros(batch, m + 1, 1, dtype=torch.float64, device=z0.device)
    rhs[:, 0] = 1.0
    n_views = 0
    x = z0
    for k in range(opts.max_iter):
        fx = f(x)
        g = fx - x
        if monitor.check(x, fx, g):
            break
        slot, n = k % m, min(k + 1, m)
        if n != n_views:  # views of the first n pairs, made when n grows
            n_views = n
            x_n, g_n, h, rhs_n = xs[:, :n], gs[:, :n], gram[:, :n, :n], rhs[:, : n + 1]
            kkt = system[:, : n + 1, : n + 1]
            block = kkt[:, 1:, 1:]
            diagonal = torch.diagonal(block, dim1=1, dim2=2)
        xs[:, slot] = x
        gs[:, slot] = g
        row = torch.bmm(g.unsqueeze(1), g_n.mT).squeeze(1).double()
        gram[:, slot, :n] = row
        gram[:, :n, slot] = row
        scale = torch.diagonal(h, dim1=1, dim2=2).amax(dim=1).clamp_min(1e-300)
        block.copy_(h)
        diagonal.add_(scale[:, None], alpha=opts.lam)
        alpha = torch.linalg.solve(kkt, rhs_n)[:, 1:].to(z0.dtype)
        alpha_t = alpha.mT
        mixed = torch.bmm(alpha_t, g_n)
        if opts.beta != 1.0:
            mixed = opts.beta * mixed
        x = (torch.bmm(alpha_t, x_n) + mixed).squeeze(1)
    return monitor.finish()
