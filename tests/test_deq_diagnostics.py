"""The spectral-radius estimate against the eigenvalues of the full Jacobian."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from jobs.deq.cells import HamburgerCell, MLPCell
from jobs.deq.diagnostics import spectral_radius
from jobs.deq.hamburger import Hamburger
from jobs.deq.solvers import solve

Func = Callable[[torch.Tensor], torch.Tensor]


def _exact_radius(f: Func, z: torch.Tensor) -> torch.Tensor:
    """max |eigenvalue| of each sample's full Jacobian df/dz at z."""
    radii = []
    for i in range(z.shape[0]):

        def one(v: torch.Tensor, i: int = i) -> torch.Tensor:
            batch = z.clone()
            batch[i] = v.view_as(z[i])
            return f(batch)[i].reshape(-1)

        jac = torch.autograd.functional.jacobian(one, z[i].reshape(-1))
        radii.append(torch.linalg.eigvals(jac.double()).abs().max())
    return torch.stack(radii).to(z.dtype)


def _mlp(seed: int) -> tuple[Func, torch.Tensor]:
    torch.manual_seed(seed)
    cell = MLPCell(
        10, width=40, depth=2, activation_name="tanh", norm="none", bound=1.0, init_scale=1.6
    )
    x = torch.randn(6, 10)
    return cell.bind(x), torch.zeros(6, 40)


def _hamburger(seed: int) -> tuple[Func, torch.Tensor]:
    torch.manual_seed(seed)
    cell = HamburgerCell(Hamburger(6, rank=3, steps=4), activation_name="relu")
    u = torch.rand(3, 9, 6)
    return cell.bind(u), torch.zeros_like(u)


@pytest.mark.parametrize("make", [_mlp, _hamburger])
@pytest.mark.parametrize("seed", range(3))
def test_spectral_radius_is_within_2_percent_of_the_exact_one(
    make: Callable[[int], tuple[Func, torch.Tensor]], seed: int
) -> None:
    f, z0 = make(seed)
    with torch.no_grad():
        z, _ = solve(f, z0, "anderson", tol=1e-6, max_iter=300)
    exact = _exact_radius(f, z)
    estimate = spectral_radius(f, z)  # the default budget of the jobs: 20 products
    assert torch.all((estimate - exact).abs() <= 0.02 * exact), (estimate, exact)


def test_spectral_radius_stops_once_the_estimate_settles() -> None:
    f, z0 = _mlp(0)
    calls = 0

    def counted(z: torch.Tensor) -> torch.Tensor:
        out = f(z)

        def count(grad: torch.Tensor) -> None:
            nonlocal calls
            calls += 1

        if out.requires_grad:
            out.register_hook(count)
        return out

    estimate = spectral_radius(counted, z0, iters=1000)
    assert calls < 40  # of at most 40 (the dimension) products
    assert torch.allclose(estimate, _exact_radius(f, z0), rtol=1e-3)
