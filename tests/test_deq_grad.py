"""Gradients through the DEQ layer: implicit vs unrolled vs finite differences, and memory."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from jobs.deq.core import DEQConfig, equilibrium
from jobs.deq.diagnostics import spectral_radius
from jobs.deq.solvers import SolverOptions

DIM, BATCH = 12, 3
TIGHT = SolverOptions(tol=1e-12, max_iter=500, memory=10)


def _problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(DIM, DIM, generator=gen, dtype=torch.float64)
    w = (0.8 * w / torch.linalg.matrix_norm(w, ord=2)).requires_grad_()
    x = torch.randn(BATCH, DIM, generator=gen, dtype=torch.float64)
    c = torch.randn(BATCH, DIM, generator=gen, dtype=torch.float64)
    b = torch.randn(DIM, generator=gen, dtype=torch.float64).requires_grad_()
    return w, b, x, c


def _loss(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, c: torch.Tensor, cfg: DEQConfig):
    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ w.T + x + b)

    z, info = equilibrium(f, torch.zeros_like(x), cfg)
    return (c * z).sum() + 0.5 * (z**2).sum(), info


def _grads(cfg: DEQConfig) -> tuple[torch.Tensor, object]:
    w, b, x, c = _problem()
    loss, info = _loss(w, b, x, c, cfg)
    loss.backward()
    return torch.cat([w.grad.flatten(), b.grad]), info


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


@pytest.mark.parametrize("backward_solver", ["anderson", "broyden", "forward"])
def test_implicit_gradient_matches_unrolled_and_finite_differences(backward_solver: str) -> None:
    implicit, info = _grads(
        DEQConfig(grad="implicit", forward=TIGHT, backward_solver=backward_solver, backward=TIGHT)
    )
    unrolled, _ = _grads(DEQConfig(grad="unrolled", forward=TIGHT))
    assert info.backward is not None and info.backward.all_converged
    assert info.backward_nfe == info.backward.nfe > 1
    assert _cos(implicit, unrolled) >= 0.999
    assert torch.allclose(implicit, unrolled, atol=1e-7, rtol=1e-6)

    w, b, x, c = _problem()
    cfg = DEQConfig(forward=TIGHT)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _ in range(3):
            dw = torch.randn(w.shape, generator=gen, dtype=w.dtype)
            db = torch.randn(b.shape, generator=gen, dtype=b.dtype)
            eps = 1e-6
            plus, _ = _loss(w + eps * dw, b + eps * db, x, c, cfg)
            minus, _ = _loss(w - eps * dw, b - eps * db, x, c, cfg)
            numeric = float((plus - minus) / (2 * eps))
            analytic = float(implicit @ torch.cat([dw.flatten(), db]))
            assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(numeric))


def test_phantom_gradient_approaches_the_implicit_one_with_more_steps() -> None:
    implicit, _ = _grads(DEQConfig(forward=TIGHT, backward=TIGHT))
    one_step, info = _grads(DEQConfig(grad="phantom", forward=TIGHT))
    many, _ = _grads(DEQConfig(grad="phantom", forward=TIGHT, phantom_steps=40, damping=0.9))
    assert info.backward_nfe == 1 and info.backward is None
    assert _cos(one_step, implicit) > 0.5  # a descent direction, not the exact gradient
    assert _cos(many, implicit) > 0.9999
    assert _cos(many, implicit) > _cos(one_step, implicit)


def _saved_bytes(run: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves for backward while ``run`` builds its graph."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run().sum().backward()
    return total


@pytest.mark.parametrize("grad", ["implicit", "phantom", "unrolled"])
def test_graph_memory_is_flat_in_solver_iterations_except_unrolled(grad: str) -> None:
    w, b, x, _ = _problem()

    def run(iters: int) -> Callable[[], torch.Tensor]:
        opts = SolverOptions(tol=1e-30, max_iter=iters, memory=5)  # never converges: all iters
        cfg = DEQConfig(solver="forward", forward=opts, grad=grad, backward=opts)
        return lambda: equilibrium(lambda z: torch.tanh(z @ w.T + x + b), torch.zeros_like(x), cfg)[
            0
        ]

    short, long = _saved_bytes(run(10)), _saved_bytes(run(80))
    if grad == "unrolled":
        assert long > 6 * short
    else:
        assert long == short


def test_evaluation_without_autograd_returns_a_detached_solution() -> None:
    w, b, x, c = _problem()
    with torch.no_grad():
        loss, info = _loss(w, b, x, c, DEQConfig(forward=TIGHT))
    assert not loss.requires_grad and info.backward is None and info.forward.all_converged


def test_spectral_radius_estimate_of_a_linear_map() -> None:
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen, dtype=torch.float64))
    eig = torch.linspace(-0.3, 0.7, 16, dtype=torch.float64)
    w = (q * eig) @ q.T
    radius = spectral_radius(lambda z: z @ w.T, torch.zeros(4, 16, dtype=torch.float64), iters=60)
    assert radius.shape == (4,)
    assert torch.allclose(radius, torch.full_like(radius, 0.7), atol=0.02)
    rotation = torch.tensor([[0.0, -0.95], [0.95, 0.0]], dtype=torch.float64)  # complex pair
    radius = spectral_radius(lambda z: z @ rotation.T, torch.zeros(2, 2, dtype=torch.float64))
    assert torch.allclose(radius, torch.full_like(radius, 0.95), atol=1e-6)
