"""Root solvers for fixed points z = f(z), batched over the first dimension.

One solver per module, all with the signature ``solver(f, z0, opts) -> (z, stats)`` on flat
``(B, D)`` batches; :func:`solve` is the public entry point for any ``(B, ...)`` shape.
:func:`register_solver` adds one, :func:`get_solver` looks one up by name.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from jobs.deq.solvers._base import STOP_MODES, SolverOptions, SolverStats
from jobs.deq.solvers.anderson import anderson
from jobs.deq.solvers.broyden import broyden
from jobs.deq.solvers.forward import forward_iteration

__all__ = [
    "STOP_MODES",
    "Solver",
    "SolverOptions",
    "SolverStats",
    "get_solver",
    "register_solver",
    "solve",
    "solve_with",
    "solver_names",
]

Solver = Callable[[Callable[[Tensor], Tensor], Tensor, SolverOptions], tuple[Tensor, SolverStats]]

_SOLVERS: dict[str, Solver] = {
    "forward": forward_iteration,
    "anderson": anderson,
    "broyden": broyden,
}


def solver_names() -> list[str]:
    """Names of the registered solvers."""
    return sorted(_SOLVERS)


def get_solver(name: str) -> Solver:
    """The solver registered as ``name``; the error lists the known names."""
    try:
        return _SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; known: {solver_names()}") from None


def register_solver(name: str, solver: Solver, *, replace: bool = False) -> None:
    """Register ``solver`` as ``name`` (``replace=True`` to override an existing one)."""
    if name in _SOLVERS and not replace:
        raise ValueError(f"solver {name!r} is already registered; pass replace=True to override")
    _SOLVERS[name] = solver


def solve(
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    method: str,
    *,
    tol: float,
    max_iter: int,
    memory: int = 5,
    stop_mode: str = "rel",
    beta: float = 1.0,
    lam: float = 1e-8,
) -> tuple[Tensor, SolverStats]:
    """Find ``z = f(z)`` for a batch ``z0`` of shape ``(B, ...)`` with solver ``method``.

    Every sample stops at the same iteration: when each one's residual is below ``tol``, after
    ``max_iter`` evaluations of ``f``, or at once when ``f`` returns NaN/inf
    (``stats.diverged``). Returns each sample's lowest-residual iterate and the stats.
    """
    opts = SolverOptions(
        tol=tol, max_iter=max_iter, memory=memory, stop_mode=stop_mode, beta=beta, lam=lam
    )
    return solve_with(f, z0, method, opts)


def solve_with(
    f: Callable[[Tensor], Tensor], z0: Tensor, method: str, opts: SolverOptions
) -> tuple[Tensor, SolverStats]:
    """:func:`solve` with its settings given as one :class:`SolverOptions`."""
    solver = get_solver(method)
    shape = z0.shape
    if len(shape) < 1 or shape[0] == 0:
        raise ValueError(f"z0 must have a non-empty batch dimension, got shape {tuple(shape)}")

    def flat_f(z: Tensor) -> Tensor:
        return f(z.view(shape)).reshape(shape[0], -1)

    z, stats = solver(flat_f, z0.reshape(shape[0], -1), opts)
    return z.view(shape), stats
