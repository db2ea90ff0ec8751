"""Hamburger (Geng et al., 2021): lower bread, NMF "ham", upper bread.

The lower bread is a 1x1 map (a linear map over channels at every position) followed by ReLU so
the ham's input is non-negative; the ham factorises it, ``X (C x N) ~ D (C x R) @ Coef (R x N)``,
by ``steps`` multiplicative updates (Lee & Seung) from a fixed non-negative dictionary; the upper
bread maps the low-rank reconstruction back. ``grad="full"`` (the default) differentiates all
K updates, so the block's Jacobian, the implicit gradient and the spectral radius of a DEQ cell
built on it are those of the map that is actually computed; ``grad="one-step"`` is the paper's
one-step gradient (earlier updates run without autograd: the graph does not grow with K, but
the Jacobian is that of the last update only). The dictionary starts from a buffer, so the
block is a deterministic function (usable inside a DEQ cell).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jobs.deq.norm import NormLinear

__all__ = ["NMF_GRADS", "Hamburger", "mu_step", "nmf"]

NMF_GRADS = ("full", "one-step")


def mu_step(x: Tensor, d: Tensor, coef: Tensor, *, eps: float) -> tuple[Tensor, Tensor]:
    """One multiplicative update of ``coef`` then ``d`` for ``x ~ d @ coef`` (all >= 0)."""
    coef = coef * (d.transpose(1, 2) @ x) / (d.transpose(1, 2) @ d @ coef + eps)
    d = d * (x @ coef.transpose(1, 2)) / (d @ (coef @ coef.transpose(1, 2)) + eps)
    return d, coef


def nmf(
    x: Tensor, bases: Tensor, steps: int, *, eps: float = 1e-6, grad: str = "full"
) -> tuple[Tensor, Tensor]:
    """Factorise non-negative ``x`` (B, C, N) as ``d`` (B, C, R) @ ``coef`` (B, R, N).

    Starts from ``d = bases`` (C, R) and ``coef = softmax(d^T x)`` over the rank and runs
    ``steps`` updates, all differentiated (``grad="full"``) or only the last (``"one-step"``).
    """
    if steps < 1:
        raise ValueError(f"nmf needs steps >= 1, got {steps}")
    if grad not in NMF_GRADS:
        raise ValueError(f"nmf grad must be one of {list(NMF_GRADS)}, got {grad!r}")
    d = bases.to(x.dtype).expand(x.shape[0], -1, -1)
    with torch.set_grad_enabled(grad == "full" and torch.is_grad_enabled()):
        coef = torch.softmax(d.transpose(1, 2) @ x, dim=1)
        for _ in range(steps - 1):
            d, coef = mu_step(x, d, coef, eps=eps)
    return mu_step(x, d, coef, eps=eps)


class Hamburger(nn.Module):
    """The ham between two breads on features laid out as (B, N positions, C channels)."""

    def __init__(
        self,
        channels: int,
        *,
        rank: int,
        steps: int,
        norm: str = "spectral",
        bound: float = 0.9,
        grad: str = "full",
    ) -> None:
        super().__init__()
        if grad not in NMF_GRADS:
            raise ValueError(f"grad must be one of {list(NMF_GRADS)}, got {grad!r}")
        self.steps = steps
        self.grad = grad
        self.lower = NormLinear(channels, channels, norm=norm, bound=bound)
        self.upper = NormLinear(channels, channels, norm=norm, bound=bound)
        self.register_buffer("bases", F.normalize(torch.rand(channels, rank), dim=0))

    def weights(self) -> tuple[Tensor, Tensor]:
        """The breads' weights, computed once per model call."""
        return self.lower.weight(), self.upper.weight()

    def ham(self, h: Tensor, weights: tuple[Tensor, Tensor]) -> Tensor:
        """Upper(NMF-reconstruction(ReLU(Lower(h)))) without the skip connection."""
        x = F.relu(self.lower.linear(h, weights[0])).transpose(1, 2)
        d, coef = nmf(x, self.bases, self.steps, grad=self.grad)
        return self.upper.linear((d @ coef).transpose(1, 2), weights[1])

    def forward(self, h: Tensor) -> Tensor:
        """``h + ham(h)``: the standalone block with its skip connection."""
        return h + self.ham(h, self.weights())
