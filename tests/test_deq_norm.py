"""Spectral normalisation holds its bound from initialisation on; weight_norm_max is exact."""

from __future__ import annotations

import pytest
import torch

from jobs.deq.cells import MLPCell
from jobs.deq.diagnostics import weight_norm_max
from jobs.deq.hamburger import Hamburger
from jobs.deq.norm import NormLinear, top_singular_pair

BOUND = 0.9


def _norm(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().double(), ord=2))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    ("shape", "init_scale"), [((64, 64), 1.0), ((64, 64), 6.0), ((16, 16), 1.0), ((32, 96), 2.0)]
)
def test_spectral_norm_holds_the_bound_at_initialisation(
    seed: int, shape: tuple[int, int], init_scale: float
) -> None:
    torch.manual_seed(seed)
    layer = NormLinear(shape[1], shape[0], bound=BOUND, init_scale=init_scale)
    assert _norm(layer.raw) > BOUND  # the bound binds
    assert abs(_norm(layer.weight()) - BOUND) <= 1e-3


def test_spectral_norm_holds_the_bound_after_every_optimiser_step() -> None:
    torch.manual_seed(0)
    cell = MLPCell(
        16,
        width=32,
        depth=2,
        activation_name="tanh",
        norm="spectral",
        bound=BOUND,
        init_scale=3.0,
    )
    ham = Hamburger(8, rank=3, steps=3, bound=BOUND)
    layers = [m for m in (*cell.modules(), *ham.modules()) if isinstance(m, NormLinear)]
    params = [*cell.parameters(), *ham.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.05)
    gen = torch.Generator().manual_seed(1)
    x, h = torch.randn(64, 16, generator=gen), torch.rand(4, 10, 8, generator=gen)
    for _ in range(40):
        f = cell.bind(x)
        z = torch.zeros(64, 32)
        for _ in range(3):
            z = f(z)
        loss = (z - 0.5).square().mean() + (ham(h) - 1.0).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert max(_norm(layer.weight()) for layer in layers) <= BOUND + 1e-3


def test_top_singular_pair_matches_the_exact_norm_with_a_tiny_gap() -> None:
    gen = torch.Generator().manual_seed(2)
    q1, _ = torch.linalg.qr(torch.randn(48, 48, generator=gen, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(48, 48, generator=gen, dtype=torch.float64))
    singular = torch.linspace(1.0, 0.1, 48, dtype=torch.float64)
    singular[1] = 0.9999  # nearly degenerate: slow for power iteration, harmless for sigma
    matrix = ((q1 * singular) @ q2.T).float()
    u, v = top_singular_pair(matrix, torch.ones(48) / 48**0.5)
    assert abs(float(u @ matrix @ v) - 1.0) <= 5e-4


def test_weight_norm_max_is_the_exact_largest_singular_value() -> None:
    torch.manual_seed(3)
    cell = MLPCell(
        8, width=24, depth=3, activation_name="relu", norm="none", bound=BOUND, init_scale=2.0
    )
    exact = max(_norm(layer.raw) for layer in cell.layers)
    assert weight_norm_max(cell) == pytest.approx(exact, rel=1e-5)
    assert weight_norm_max(torch.nn.Linear(3, 3)) == 0.0
