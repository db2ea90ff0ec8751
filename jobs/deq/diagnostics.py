"""Per-evaluation diagnostics: spectral radius of df/dz at z*, weight norms, peak memory."""

from __future__ import annotations

import math
import resource
import sys
from collections.abc import Callable

import torch
from torch import Tensor, nn

from jobs.deq.norm import NormLinear

__all__ = [
    "finite_or",
    "peak_memory_mb",
    "reset_peak_memory",
    "spectral_radius",
    "weight_norm_max",
]


def spectral_radius(f: Callable[[Tensor], Tensor], z_star: Tensor, *, iters: int = 20) -> Tensor:
    """Per-sample estimate of the spectral radius of ``J = df/dz`` at ``z*``.

    Power iteration with vector-Jacobian products ``v <- J^T v`` (J^T has J's eigenvalues); the
    estimate is the geometric mean growth ``(|J^T^k v| / |v|)^(1/k)`` over the second half of the
    iterations, which also converges for a dominant complex pair. Needs f to act on each sample
    separately (no batch statistics). Below 1: f is locally a contraction.
    """
    z = z_star.detach().requires_grad_()
    with torch.enable_grad():
        fz = f(z)
    batch = z.shape[0]
    gen = torch.Generator(device=z.device).manual_seed(0)
    v = torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)
    logs: list[Tensor] = []
    for k in range(iters):
        v = v / torch.linalg.vector_norm(v.reshape(batch, -1), dim=1).clamp_min(1e-30).view(
            batch, *([1] * (z.dim() - 1))
        )
        (v,) = torch.autograd.grad(fz, z, v, retain_graph=k < iters - 1)
        if k >= iters // 2:
            logs.append(torch.log(torch.linalg.vector_norm(v.reshape(batch, -1), dim=1)))
    return torch.exp(torch.stack(logs).mean(dim=0)).detach()


@torch.no_grad()
def weight_norm_max(model: nn.Module) -> float:
    """The exact largest singular value over the effective weights of every :class:`NormLinear`
    in ``model`` (0 if it has none): at most ``bound`` under spectral normalisation."""
    norms = [
        torch.linalg.matrix_norm(m.weight(), ord=2)
        for m in model.modules()
        if isinstance(m, NormLinear)
    ]
    return float(torch.stack(norms).max()) if norms else 0.0


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA peak (the CPU's process peak RSS cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA peak allocation since the last reset on GPU, else the process's peak RSS, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def finite_or(value: float, default: float) -> float:
    """``value`` if finite, else ``default`` (metrics returned to a sweep must be finite)."""
    return value if math.isfinite(value) else default
