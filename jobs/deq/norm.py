"""A linear map whose weight can be weight- or spectrally normalised.

``spectral`` bounds the operator norm by ``bound``: W = V * min(1, bound / sigma(V)), sigma the
largest singular value of V by power iteration run to convergence at every call, warm-started
from the previous call's vector (a buffer), so after an optimiser step it takes a few
iterations. With 1-Lipschitz activations a cell built from such maps is a contraction.
``weight`` is Salimans & Kingma's per-row ``g * v / |v|`` (the DEQ papers' choice; no
contraction guarantee). :meth:`NormLinear.weight`
is computed once per model call, so every solver iteration sees the same map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NORMS", "NormLinear", "top_singular_pair"]

NORMS = ("none", "weight", "spectral")
SIGMA_RTOL = 1e-4  # power iteration stops at this relative residual |V^T u - sigma v| / sigma
MAX_POWER_ITERS = 1000


@torch.no_grad()
def top_singular_pair(
    matrix: Tensor, u: Tensor, *, rtol: float = SIGMA_RTOL, max_iters: int = MAX_POWER_ITERS
) -> tuple[Tensor, Tensor]:
    """Unit vectors ``(u, v)`` with ``matrix @ v = sigma u``, sigma the largest singular value.

    Power iteration on ``matrix^T matrix`` from ``u`` until ``|matrix^T u - sigma v| <= rtol sigma``
    (``sigma = |matrix @ v|``) or ``max_iters`` iterations. Once ``v`` leans towards the top
    singular vector the relative error of sigma is below ``rtol``, whatever the gap between the
    two largest singular values (a small gap makes the residual small too).
    """
    w = matrix.T @ u
    for _ in range(max_iters):
        v = F.normalize(w, dim=0)
        x = matrix @ v
        sigma = torch.linalg.vector_norm(x).clamp_min(1e-30)
        u = x / sigma
        w = matrix.T @ u
        if float(torch.linalg.vector_norm(w - sigma * v) / sigma) <= rtol:
            break
    return u, v


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
            u, v = top_singular_pair(self.raw.detach(), self.u)
            if self.training:
                self.u.copy_(u)
            sigma = torch.dot(u, self.raw @ v)  # differentiable: d sigma / dV = u v^T
            return self.raw * torch.clamp(self.bound / sigma, max=1.0)
        return self.raw

    def linear(self, x: Tensor, weight: Tensor) -> Tensor:
        """``x @ weight^T + b`` over the last dimension."""
        return F.linear(x, weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x, self.weight())
