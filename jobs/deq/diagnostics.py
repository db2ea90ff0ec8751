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


def spectral_radius(
    f: Callable[[Tensor], Tensor], z_star: Tensor, *, iters: int = 20, rtol: float = 1e-3
) -> Tensor:
    """Per-sample spectral radius of ``J = df/dz`` at ``z*`` by Arnoldi iteration.

    Builds an orthonormal Krylov basis of ``J^T`` (which has J's eigenvalues) from
    vector-Jacobian products, per sample, and takes the largest modulus among the eigenvalues of
    the small Hessenberg matrix (the Ritz values: Arnoldi finds the outermost eigenvalues, real or
    complex, first). Stops when every sample's estimate has changed by less than ``rtol``
    (relative) twice in a row, when the basis spans an invariant subspace (then it is exact), or
    after ``iters`` products. Needs f to act on each sample separately (no batch statistics).
    Below 1: f is locally a contraction.
    """
    z = z_star.detach().requires_grad_()
    with torch.enable_grad():
        fz = f(z)
    batch, dim = z.shape[0], z[0].numel()
    steps = min(iters, dim)
    gen = torch.Generator(device=z.device).manual_seed(0)
    basis = torch.zeros(batch, steps + 1, dim, device=z.device, dtype=z.dtype)
    hess = torch.zeros(batch, steps + 1, steps, device=z.device, dtype=torch.float64)
    start = torch.randn(batch, dim, generator=gen, device=z.device, dtype=z.dtype)
    basis[:, 0] = start / torch.linalg.vector_norm(start, dim=1, keepdim=True)
    estimate = torch.zeros(batch, device=z.device, dtype=torch.float64)
    settled = 0
    for k in range(steps):
        (w,) = torch.autograd.grad(fz, z, basis[:, k].view_as(z), retain_graph=k < steps - 1)
        w = w.reshape(batch, dim)
        for _ in range(2):  # classical Gram-Schmidt, twice: orthogonal to working precision
            coeffs = torch.bmm(basis[:, : k + 1], w.unsqueeze(2))  # (B, k+1, 1)
            w = w - torch.bmm(coeffs.transpose(1, 2), basis[:, : k + 1]).squeeze(1)
            hess[:, : k + 1, k] += coeffs.squeeze(2).double()
        norm = torch.linalg.vector_norm(w, dim=1)
        hess[:, k + 1, k] = norm.double()
        scale = torch.finfo(z.dtype).eps * hess[:, : k + 2, k].abs().amax(dim=1).to(z.dtype)
        invariant = norm <= scale  # the Krylov space is invariant: the Ritz values are exact
        basis[:, k + 1] = torch.where(invariant[:, None], 0.0, w / norm.clamp_min(1e-30)[:, None])
        ritz = torch.linalg.eigvals(hess[:, : k + 1, : k + 1]).abs().amax(dim=1)
        change = (ritz - estimate).abs() <= rtol * ritz
        estimate = ritz
        settled = settled + 1 if bool((change | invariant).all()) else 0
        if settled == 2 or bool(invariant.all()):
            break
    return estimate.to(z.dtype)


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
