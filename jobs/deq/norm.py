"""A linear map whose weight can be weight- or spectrally normalised.

``spectral`` bounds the operator norm by ``bound`` (W = V * min(1, bound / sigma(V)), sigma from
one power-iteration step per call, its vector kept in a buffer): with 1-Lipschitz activations a
cell built from such maps is a contraction. ``weight`` is Salimans & Kingma's per-row
``g * v / |v|`` (the DEQ papers' choice; no contraction guarantee). :meth:`NormLinear.weight`
is computed once per model call, so every solver iteration sees the same map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NORMS", "NormLinear"]

NORMS = ("none", "weight", "spectral")


class NormLinear(nn.Module):
    """``x @ W^T + b`` with ``W`` from :meth:`weight`."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        norm: str = "spectral",
        bound: float = 0.9,
        bias: bool = True,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
        self.norm = norm
        self.bound = bound
        bound_init = init_scale / math.sqrt(in_features)
        self.raw = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1) * bound_init)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        if norm == "weight":
            self.gain = nn.Parameter(torch.linalg.vector_norm(self.raw.detach(), dim=1))
        if norm == "spectral":
            u = torch.randn(out_features)
            self.register_buffer("u", u / torch.linalg.vector_norm(u))

    def weight(self) -> Tensor:
        """The effective weight (call once per forward and reuse it inside the solver)."""
        if self.norm == "weight":
            rows = torch.linalg.vector_norm(self.raw, dim=1, keepdim=True).clamp_min(1e-12)
            return self.raw * (self.gain[:, None] / rows)
        if self.norm == "spectral":
            with torch.no_grad():
                v = F.normalize(self.raw.T @ self.u, dim=0)
                u = F.normalize(self.raw @ v, dim=0)
                if self.training:
                    self.u.copy_(u)
            sigma = torch.dot(u, self.raw @ v)
            return self.raw * torch.clamp(self.bound / sigma, max=1.0)
        return self.raw

    def linear(self, x: Tensor, weight: Tensor) -> Tensor:
        """``x @ weight^T + b`` over the last dimension."""
        return F.linear(x, weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x, self.weight())
