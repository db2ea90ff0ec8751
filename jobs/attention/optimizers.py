"""Update rules for the attention weights, looked up by name in :data:`OPTIMIZERS`.

- ``gd``: ``w -= lr * g``.
- ``ngd``: normalised GD, ``w -= lr * g / ||g||`` (norm over all trained tensors together).
- ``polyak``: ``w -= lr * (L - L*) / ||g||^2 * g``, the Polyak step with the loss infimum ``L*``.
- ``mirror``: l_p mirror descent, ``grad psi(w_new) = grad psi(w) - lr * g`` for the potential
  ``psi = ||w||_p^p / p`` (``potential="power"``, entrywise, the l_p-AttGD of Julistiono et al.)
  or ``psi = ||w||_p^2 / 2`` (``potential="squared"``, per tensor); p in (1, inf).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

POTENTIALS = ("power", "squared")


@dataclass(frozen=True)
class StepConfig:
    """Knobs an update rule may read."""

    lr: float
    p: float = 2.0
    potential: str = "power"


Update = Callable[[list[torch.Tensor], list[torch.Tensor], float, StepConfig], None]


def global_norm(tensors: list[torch.Tensor]) -> float:
    """l2 norm of all ``tensors`` together, scaled so that squares of tiny entries do not underflow.

    Late in training the gradients are ~1e-200 (attention is one-hot up to that), yet their
    direction is exactly what drives the weights to the max-margin solution.
    """
    scale = max(float(t.abs().max()) for t in tensors)
    if scale == 0 or not math.isfinite(scale):
        return scale
    return scale * math.sqrt(sum(float(((t / scale) ** 2).sum()) for t in tensors))


@torch.no_grad()
def gd(params: list[torch.Tensor], grads: list[torch.Tensor], gap: float, cfg: StepConfig) -> None:
    """Plain gradient descent."""
    for w, g in zip(params, grads, strict=True):
        w.sub_(cfg.lr * g)


@torch.no_grad()
def ngd(params: list[torch.Tensor], grads: list[torch.Tensor], gap: float, cfg: StepConfig) -> None:
    """Normalised gradient descent: a step of length ``lr`` along ``-g``."""
    norm = global_norm(grads)
    for w, g in zip(params, grads, strict=True):
        w.sub_(cfg.lr * (g / norm))


@torch.no_grad()
def polyak(
    params: list[torch.Tensor], grads: list[torch.Tensor], gap: float, cfg: StepConfig
) -> None:
    """Polyak step size ``lr * (L - L*) / ||g||^2``."""
    norm = global_norm(grads)
    length = cfg.lr * gap / norm
    for w, g in zip(params, grads, strict=True):
        w.sub_(length * (g / norm))


def _signed_power(x: torch.Tensor, exponent: float) -> torch.Tensor:
    return torch.sign(x) * x.abs().pow(exponent)


def _mirror_map(w: torch.Tensor, p: float, potential: str) -> torch.Tensor:
    """``grad psi(w)``; with ``q = p / (p - 1)`` the same map is the inverse on the dual side."""
    out = _signed_power(w, p - 1)
    if potential == "squared":
        norm = float(torch.linalg.vector_norm(w, ord=p))
        out = out * norm ** (2 - p) if norm > 0 else out
    return out


@torch.no_grad()
def mirror(
    params: list[torch.Tensor], grads: list[torch.Tensor], gap: float, cfg: StepConfig
) -> None:
    """l_p mirror descent on each trained tensor."""
    if not 1 < cfg.p < float("inf") or cfg.potential not in POTENTIALS:
        raise ValueError(
            f"mirror needs 1 < p < inf and potential in {POTENTIALS}; "
            f"got p={cfg.p}, potential={cfg.potential!r}"
        )
    q = cfg.p / (cfg.p - 1)
    for w, g in zip(params, grads, strict=True):
        dual = _mirror_map(w, cfg.p, cfg.potential) - cfg.lr * g
        w.copy_(_mirror_map(dual, q, cfg.potential))


@dataclass(frozen=True)
class Optimizer:
    """An update rule and the step size it uses when ``lr`` is not given."""

    update: Update
    default_lr: float


OPTIMIZERS: dict[str, Optimizer] = {
    "gd": Optimizer(gd, default_lr=1.0),
    "ngd": Optimizer(ngd, default_lr=0.1),
    "polyak": Optimizer(polyak, default_lr=1.0),
    "mirror": Optimizer(mirror, default_lr=1.0),
}


def get_optimizer(name: str) -> Optimizer:
    """The optimiser registered as ``name``."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; known: {sorted(OPTIMIZERS)}") from None
