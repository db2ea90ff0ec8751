"""One training epoch and one evaluation pass of a classifier, with the DEQ diagnostics."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jobs.deq.core import DEQInfo
from jobs.deq.data import batches
from jobs.deq.diagnostics import spectral_radius
from jobs.deq.models import DEQClassifier

__all__ = ["SolverDiverged", "evaluate", "train_epoch"]


class SolverDiverged(Exception):
    """A solve returned NaN/inf, or the loss did."""


@dataclass
class _Mean:
    total: float = 0.0
    count: int = 0
    peak: float = 0.0

    def add(self, value: float, weight: int = 1) -> None:
        self.total += value * weight
        self.count += weight
        self.peak = max(self.peak, value)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    default_nfe: float,
    where: str,
) -> dict[str, float]:
    """One pass over ``(x, y)``: mean loss, forward/backward NFE and the wall time.

    Models without a fixed point count ``default_nfe`` forward and one backward evaluation.
    """
    model.train()
    loss_mean, nfe_fwd, nfe_bwd = _Mean(), _Mean(), _Mean()
    start = time.perf_counter()
    for step, (xb, yb) in enumerate(batches(x, y, batch_size, generator=generator)):
        logits, info = model(xb)
        _check(info, f"{where}, training batch {step}, forward")
        loss = F.cross_entropy(logits, yb)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise SolverDiverged(f"non-finite training loss at {where}, batch {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if info is not None and info.backward is not None and info.backward.diverged:
            raise SolverDiverged(
                f"backward solver: {info.backward.reason} ({where}, training batch {step})"
            )
        optimizer.step()
        loss_mean.add(value, len(yb))
        nfe_fwd.add(info.forward.nfe if info is not None else default_nfe)
        nfe_bwd.add(info.backward_nfe if info is not None else 1)
    return {
        "train_loss": loss_mean.mean,
        "train_nfe_forward": nfe_fwd.mean,
        "nfe_backward": nfe_bwd.mean,
        "nfe_backward_max": nfe_bwd.peak,
        "epoch_time_s": time.perf_counter() - start,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int,
    spectral_iters: int,
    default_nfe: float,
    where: str,
) -> dict[str, float]:
    """Accuracy and solver diagnostics over ``(x, y)``; spectral radius on the first batch.

    Models without a fixed point (the plain Hamburger) report ``default_nfe`` evaluations, zero
    residual and spectral radius, and everything converged.
    """
    model.eval()
    correct, nfe, residual, converged = 0, _Mean(), _Mean(), _Mean()
    for xb, yb in batches(x, y, batch_size):
        logits, info = model(xb)
        _check(info, f"{where}, evaluation")
        correct += int((logits.argmax(dim=1) == yb).sum())
        if info is None:
            nfe.add(default_nfe, len(yb))
            continue
        stats = info.forward
        nfe.add(stats.nfe, len(yb))
        for value in stats.rel_residual.tolist():
            residual.add(value)
        converged.add(stats.converged_fraction, len(yb))
    radius = _spectral(model, x[:batch_size], spectral_iters)
    accuracy = correct / len(y)
    return {
        "test_accuracy": accuracy,
        "test_error": 1.0 - accuracy,
        "nfe_forward": nfe.mean,
        "nfe_forward_max": nfe.peak,
        "residual": residual.mean,
        "residual_max": residual.peak,
        "converged_fraction": converged.mean if converged.count else 1.0,
        "spectral_radius": float(radius.mean()) if radius is not None else 0.0,
        "spectral_radius_max": float(radius.max()) if radius is not None else 0.0,
    }


def _spectral(model: nn.Module, x: Tensor, iters: int) -> Tensor | None:
    if not isinstance(model, DEQClassifier):
        return None
    f, z, _ = model.solve(x)
    return spectral_radius(f, z, iters=iters)


def _check(info: DEQInfo | None, where: str) -> None:
    if info is not None and info.forward.diverged:
        raise SolverDiverged(f"{info.forward.method} solver: {info.forward.reason} ({where})")
