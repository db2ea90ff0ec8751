"""What every solver shares: its options, its stats, and the residual monitor.

Solvers work on flat batches ``z`` of shape ``(B, D)`` with ``f: (B, D) -> (B, D)``; the public
:func:`jobs.deq.solvers.solve` reshapes any ``(B, ...)`` problem to that form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["EPS", "STOP_MODES", "Monitor", "SolverOptions", "SolverStats"]

STOP_MODES = ("rel", "abs")
EPS = 1e-9  # keeps relative residuals finite when f(z) = 0

Func = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class SolverOptions:
    """Settings shared by every solver (each uses the ones that apply to it).

    ``tol``: stop when every sample's residual (relative ``|f(z)-z|/|f(z)|`` for
    ``stop_mode="rel"``, ``|f(z)-z|`` for ``"abs"``) is below it. ``memory``: Anderson's history
    length m, Broyden's number of secant pairs kept. ``beta``: Anderson mixing.
    ``lam``: Anderson's Tikhonov regularisation, relative to the largest diagonal entry of the
    residual Gram matrix (scale-free, so it stays right as residuals shrink).
    """

    tol: float = 1e-4
    max_iter: int = 50
    memory: int = 5
    stop_mode: str = "rel"
    beta: float = 1.0
    lam: float = 1e-8

    def __post_init__(self) -> None:
        checks = {
            "tol > 0": self.tol > 0,
            "max_iter >= 1": self.max_iter >= 1,
            "memory >= 1": self.memory >= 1,
            f"stop_mode in {list(STOP_MODES)}": self.stop_mode in STOP_MODES,
            "0 < beta <= 1": 0 < self.beta <= 1,
            "lam >= 0": self.lam >= 0,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid solver options: need {'; '.join(failed)} (got {self})")


@dataclass
class SolverStats:
    """What a solve did.

    ``trace[k]`` is, after ``k + 1`` evaluations, the largest over the batch of each sample's
    lowest residual so far (in ``stop_mode``): the residual the solve would return if it stopped
    there. The per-sample tensors describe the returned point (each sample's lowest-residual
    iterate). ``diverged`` is set, and the solve stops at once, when ``f`` returns NaN or inf.
    """

    method: str
    nfe: int = 0
    trace: list[float] = field(default_factory=list)
    abs_residual: Tensor | None = None
    rel_residual: Tensor | None = None
    converged: Tensor | None = None
    diverged: bool = False
    reason: str = ""

    @property
    def converged_fraction(self) -> float:
        """Fraction of samples whose returned point meets the tolerance."""
        assert self.converged is not None, "stats of an unfinished solve"
        return float(self.converged.float().mean())

    @property
    def all_converged(self) -> bool:
        return not self.diverged and self.converged_fraction == 1.0


class Monitor:
    """Counts evaluations, records residuals, keeps each sample's best iterate, spots NaN/inf."""

    def __init__(self, z0: Tensor, opts: SolverOptions, method: str) -> None:
        self.opts = opts
        self.stats = SolverStats(method=method)
        batch = z0.shape[0]
        self.best_z = z0.clone()
        self.best_abs = torch.full((batch,), math.inf, device=z0.device, dtype=z0.dtype)
        self.best_rel = self.best_abs.clone()

    def check(self, z: Tensor, fz: Tensor, residual: Tensor | None = None) -> bool:
        """Record the residual of ``z`` (with ``fz = f(z)``; ``residual``: ``fz - z`` when the
        solver has it already); return whether to stop."""
        self.stats.nfe += 1
        abs_r = torch.linalg.vector_norm(fz - z if residual is None else residual, dim=1)
        rel_r = abs_r / (torch.linalg.vector_norm(fz, dim=1) + EPS)
        stop_r = rel_r if self.opts.stop_mode == "rel" else abs_r
        best = self.best_rel if self.opts.stop_mode == "rel" else self.best_abs
        better = stop_r < best  # False for NaN: a sample keeps its last finite iterate
        self.best_z = torch.where(better[:, None], z, self.best_z)
        self.best_abs = torch.where(better, abs_r, self.best_abs)
        self.best_rel = torch.where(better, rel_r, self.best_rel)
        best = self.best_rel if self.opts.stop_mode == "rel" else self.best_abs
        current, worst = torch.stack([stop_r.max(), best.max()]).tolist()  # max keeps NaN
        self.stats.trace.append(worst)
        if not math.isfinite(current):
            self.stats.diverged = True
            self.stats.reason = f"non-finite residual at iteration {self.stats.nfe}"
            return True
        return worst < self.opts.tol

    def finish(self) -> tuple[Tensor, SolverStats]:
        """The best iterate per sample and the completed stats."""
        best = self.best_rel if self.opts.stop_mode == "rel" else self.best_abs
        self.stats.abs_residual = self.best_abs
        self.stats.rel_residual = self.best_rel
        self.stats.converged = best < self.opts.tol
        return self.best_z, self.stats
