"""The functions f(z, x) that DEQ models find fixed points of.

A cell's :meth:`bind` computes everything that depends on the input or the weights only once
(injection, normalised weights) and returns ``f(z)`` for the solver; :meth:`init_state` is z0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jobs.deq.hamburger import Hamburger
from jobs.deq.norm import NormLinear

__all__ = ["ACTIVATIONS", "HamburgerCell", "MLPCell", "activation"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "softplus": F.softplus,
    "silu": F.silu,
    "elu": F.elu,
    "leaky_relu": F.leaky_relu,
    "sigmoid": torch.sigmoid,
}


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation called ``name``; the error lists the known ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None


class MLPCell(nn.Module):
    """``f(z, x) = s(W_d ... s(W_2 s(W_1 z + U x)))``: ``depth`` layers of ``width`` units.

    With ``norm="spectral"`` every ``|W_i|_2 <= bound`` and, for 1-Lipschitz activations
    (relu, tanh, softplus, sigmoid, elu, leaky_relu), f is a contraction in z with constant
    ``bound ** depth`` (gelu and silu are ~1.1-Lipschitz).
    """

    def __init__(
        self,
        in_features: int,
        *,
        width: int,
        depth: int,
        activation_name: str,
        norm: str,
        bound: float,
        init_scale: float,
    ) -> None:
        super().__init__()
        self.width = width
        self.act = activation(activation_name)
        self.inject = nn.Linear(in_features, width)
        self.layers = nn.ModuleList(
            NormLinear(width, width, norm=norm, bound=bound, init_scale=init_scale)
            for _ in range(depth)
        )

    def init_state(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.width)

    def bind(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """``f(z)`` for the input batch ``x`` (B, in_features)."""
        u = self.inject(x)
        weights = [layer.weight() for layer in self.layers]

        def f(z: Tensor) -> Tensor:
            h = z
            for i, (layer, w) in enumerate(zip(self.layers, weights, strict=True)):
                h = layer.linear(h, w)
                h = self.act(h + u if i == 0 else h)
            return h

        return f


class HamburgerCell(nn.Module):
    """``f(z, x) = s(Ham(z) + u(x))`` on (B, N, C) feature maps, ``u`` the stem's output."""

    def __init__(self, hamburger: Hamburger, *, activation_name: str) -> None:
        super().__init__()
        self.hamburger = hamburger
        self.act = activation(activation_name)

    def init_state(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def bind(self, u: Tensor) -> Callable[[Tensor], Tensor]:
        """``f(z)`` for the injected features ``u`` (B, N, C)."""
        weights = self.hamburger.weights()
        return lambda z: self.act(self.hamburger.ham(z, weights) + u)
