"""The DEQ layer: z* = f(z*) for any function f, with a choice of gradient.

It knows nothing of models: a model binds its input into ``f`` (``lambda z: cell(z, x)``) and
calls :func:`equilibrium`. The forward solve runs without autograd; the gradient comes from
:mod:`jobs.deq.grad`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from jobs.deq import grad as grads
from jobs.deq.solvers import SolverOptions, SolverStats, get_solver, solve_with

__all__ = ["GRAD_MODES", "DEQConfig", "DEQInfo", "equilibrium"]

GRAD_MODES = ("implicit", "phantom", "unrolled")


@dataclass(frozen=True)
class DEQConfig:
    """Solvers and gradient of a DEQ layer.

    ``grad``: ``implicit`` (adjoint fixed point with ``backward_solver``/``backward``),
    ``phantom`` (``phantom_steps`` damped steps at z* with ``damping``; 1 and 1.0 give the
    one-step gradient) or ``unrolled`` (backprop through fixed-point iteration with the forward
    ``tol``/``max_iter``; the reference, with memory linear in the iterations).
    """

    solver: str = "anderson"
    forward: SolverOptions = field(default_factory=SolverOptions)
    grad: str = "implicit"
    backward_solver: str = "anderson"
    backward: SolverOptions = field(default_factory=SolverOptions)
    phantom_steps: int = 1
    damping: float = 1.0

    def __post_init__(self) -> None:
        get_solver(self.solver)
        get_solver(self.backward_solver)
        if self.grad not in GRAD_MODES:
            raise ValueError(f"grad must be one of {list(GRAD_MODES)}, got {self.grad!r}")
        if self.phantom_steps < 1 or not 0 < self.damping <= 1:
            raise ValueError(
                f"need phantom_steps >= 1 and 0 < damping <= 1, got {self.phantom_steps}, "
                f"{self.damping}"
            )


@dataclass
class DEQInfo:
    """Stats of one DEQ call: the forward solve, and the backward once it has run."""

    forward: SolverStats
    backward: SolverStats | None = None
    backward_nfe: int = 0


def equilibrium(
    f: Callable[[Tensor], Tensor], z0: Tensor, cfg: DEQConfig
) -> tuple[Tensor, DEQInfo]:
    """Solve ``z = f(z)`` from ``z0`` and return ``z*`` wired for the configured gradient.

    With autograd off (evaluation) ``z*`` is returned detached. ``info.backward`` and
    ``info.backward_nfe`` are filled when the loss's backward runs through the layer.
    """
    if cfg.grad == "unrolled" and torch.is_grad_enabled():
        z, stats = grads.unrolled(f, z0, cfg.forward)
        return z, DEQInfo(forward=stats, backward_nfe=stats.nfe)
    with torch.no_grad():
        z, stats = solve_with(f, z0.detach(), cfg.solver, cfg.forward)
    info = DEQInfo(forward=stats)
    if not torch.is_grad_enabled() or stats.diverged:
        return z, info
    if cfg.grad == "phantom":
        info.backward_nfe = cfg.phantom_steps
        return grads.phantom(f, z, steps=cfg.phantom_steps, damping=cfg.damping), info

    def record(backward: SolverStats) -> None:
        info.backward = backward
        info.backward_nfe = backward.nfe

    return grads.implicit(
        f, z, method=cfg.backward_solver, opts=cfg.backward, on_backward=record
    ), info
