"""How gradients reach the parameters of f through a fixed point z* = f(z*).

- :func:`implicit`: re-attach ``z*`` with one differentiable step ``f(z*)`` and, on the way
  back, replace the incoming gradient ``g`` by the solution of the adjoint fixed point
  ``y = J^T y + g`` (``J = df/dz`` at ``z*``), solved with any registered solver from
  vector-Jacobian products. The graph holds one step of ``f``: memory does not grow with the
  number of forward or adjoint iterations.
- :func:`phantom`: ``k`` damped steps ``z <- (1 - d) z + d f(z)`` from ``z*`` with gradient
  (``k = 1, d = 1`` is the Jacobian-free one-step gradient); memory grows with ``k`` only.
- :func:`unrolled`: fixed-point iteration with autograd on for every step, the reference that
  implicit differentiation approximates; memory grows with the iterations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from jobs.deq.solvers import SolverOptions, SolverStats, solve_with
from jobs.deq.solvers._base import Monitor

__all__ = ["implicit", "phantom", "unrolled"]

Func = Callable[[Tensor], Tensor]


def implicit(
    f: Func,
    z_star: Tensor,
    *,
    method: str,
    opts: SolverOptions,
    on_backward: Callable[[SolverStats], None],
) -> Tensor:
    """``f(z*)`` whose backward solves the adjoint fixed point; ``on_backward`` gets its stats."""
    z_star = z_star.detach().requires_grad_()
    fz = f(z_star)

    def adjoint_solve(grad: Tensor) -> Tensor:
        handle.remove()  # the vector-Jacobian products below run through fz's graph again

        def adjoint(y: Tensor) -> Tensor:
            (vjp,) = torch.autograd.grad(fz, z_star, y, retain_graph=True)
            return vjp + grad

        y, stats = solve_with(adjoint, grad, method, opts)
        on_backward(stats)
        return y

    if fz.requires_grad:
        handle = fz.register_hook(adjoint_solve)
    return fz


def phantom(f: Func, z_star: Tensor, *, steps: int, damping: float) -> Tensor:
    """``steps`` damped fixed-point steps from ``z*`` (detached) with autograd on."""
    z = z_star.detach()
    for _ in range(steps):
        z = f(z) if damping == 1.0 else (1.0 - damping) * z + damping * f(z)
    return z


def unrolled(f: Func, z0: Tensor, opts: SolverOptions) -> tuple[Tensor, SolverStats]:
    """Fixed-point iteration recorded by autograd until the tolerance or ``max_iter``."""
    batch = z0.shape[0]
    monitor = Monitor(z0.detach().reshape(batch, -1), opts, "forward")
    z = z0
    for _ in range(opts.max_iter):
        fz = f(z)
        done = monitor.check(z.detach().reshape(batch, -1), fz.detach().reshape(batch, -1))
        z = fz
        if done:
            break
    _, stats = monitor.finish()
    return z, stats
