"""Plain fixed-point iteration z <- f(z): one evaluation per step, linear rate = contraction."""

from __future__ import annotations

from torch import Tensor

from jobs.deq.solvers._base import Func, Monitor, SolverOptions, SolverStats


def forward_iteration(f: Func, z0: Tensor, opts: SolverOptions) -> tuple[Tensor, SolverStats]:
    """Iterate ``z <- f(z)`` from ``z0`` until the tolerance or ``max_iter`` evaluations."""
    monitor = Monitor(z0, opts, "forward")
    z = z0
    for _ in range(opts.max_iter):
        fz = f(z)
        if monitor.check(z, fz):
            break
        z = fz
    return monitor.finish()
