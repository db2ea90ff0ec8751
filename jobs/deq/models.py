"""Image classifiers around the cells: ``deq`` (MLP cell), ``hamburger`` and ``deq-hamburger``.

Every model maps images (B, C, H, W) to ``(logits, info)``; ``info`` is the DEQ layer's
:class:`~jobs.deq.core.DEQInfo` (None for the plain Hamburger). ``model.deq`` can be replaced
after training to evaluate with another solver; :meth:`bind` exposes ``f`` and ``z0`` for
diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from jobs.deq.cells import HamburgerCell, MLPCell, activation
from jobs.deq.core import DEQConfig, DEQInfo, equilibrium
from jobs.deq.hamburger import Hamburger

__all__ = [
    "MODELS",
    "DEQClassifier",
    "HamburgerClassifier",
    "ModelSpec",
    "build_model",
    "count_parameters",
]

MODELS = ("deq", "hamburger", "deq-hamburger")


@dataclass(frozen=True)
class ModelSpec:
    """What it takes to rebuild a model (stored with its checkpoint)."""

    model: str = "deq"
    depth: int = 1
    width: int = 64
    activation: str = "relu"
    norm: str = "spectral"
    bound: float = 0.9
    init_scale: float = 1.0
    rank: int = 8
    nmf_steps: int = 6
    nmf_grad: str = "full"
    in_shape: tuple[int, int, int] = (1, 8, 8)
    classes: int = 10


class _Stem(nn.Module):
    """3x3 convolution + ReLU, laid out as (B, H*W positions, width channels)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, width, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x)).flatten(2).transpose(1, 2)


class DEQClassifier(nn.Module):
    """``head(z*)`` with ``z* = f(z*, encode(x))`` found by the DEQ layer."""

    def __init__(
        self, encoder: nn.Module, cell: nn.Module, features: int, classes: int, deq: DEQConfig
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.cell = cell
        self.head = nn.Linear(features, classes)
        self.deq = deq

    def bind(self, x: Tensor) -> tuple[Callable[[Tensor], Tensor], Tensor]:
        """The cell's ``f`` for this batch and its initial state."""
        u = self.encoder(x)
        return self.cell.bind(u), self.cell.init_state(u)

    def solve(self, x: Tensor) -> tuple[Callable[[Tensor], Tensor], Tensor, DEQInfo]:
        """``f`` for this batch, its fixed point ``z*`` and the layer's info."""
        f, z0 = self.bind(x)
        z, info = equilibrium(f, z0, self.deq)
        return f, z, info

    def forward(self, x: Tensor) -> tuple[Tensor, DEQInfo | None]:
        _, z, info = self.solve(x)
        return self.head(z.flatten(1)), info


class HamburgerClassifier(nn.Module):
    """``head(s(h + Ham(h)))`` with ``h`` the stem's features: no fixed point."""

    def __init__(
        self,
        stem: nn.Module,
        hamburger: Hamburger,
        features: int,
        classes: int,
        activation_name: str,
    ) -> None:
        super().__init__()
        self.stem = stem
        self.hamburger = hamburger
        self.act = activation(activation_name)
        self.head = nn.Linear(features, classes)
        self.deq: DEQConfig | None = None

    def forward(self, x: Tensor) -> tuple[Tensor, DEQInfo | None]:
        return self.head(self.act(self.hamburger(self.stem(x))).flatten(1)), None


def build_model(spec: ModelSpec, deq: DEQConfig) -> DEQClassifier | HamburgerClassifier:
    """A fresh model (initialised from torch's global RNG: seed it first)."""
    channels, height, width = spec.in_shape
    positions = height * width
    if spec.model == "deq":
        cell = MLPCell(
            channels * positions,
            width=spec.width,
            depth=spec.depth,
            activation_name=spec.activation,
            norm=spec.norm,
            bound=spec.bound,
            init_scale=spec.init_scale,
        )
        return DEQClassifier(nn.Flatten(), cell, spec.width, spec.classes, deq)
    if spec.model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {spec.model!r}")
    hamburger = Hamburger(
        spec.width,
        rank=spec.rank,
        steps=spec.nmf_steps,
        norm=spec.norm,
        bound=spec.bound,
        grad=spec.nmf_grad,
    )
    stem = _Stem(channels, spec.width)
    features = positions * spec.width
    if spec.model == "hamburger":
        return HamburgerClassifier(stem, hamburger, features, spec.classes, spec.activation)
    cell = HamburgerCell(hamburger, activation_name=spec.activation)
    return DEQClassifier(stem, cell, features, spec.classes, deq)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
