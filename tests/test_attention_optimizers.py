"""The update rules: registry, step lengths, mirror maps and tiny-gradient handling."""

from __future__ import annotations

import math

import pytest
import torch

from jobs.attention.optimizers import (
    OPTIMIZERS,
    POTENTIALS,
    StepConfig,
    get_optimizer,
    global_norm,
)


def _tensors(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in range(2)]


def test_unknown_optimizer_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'adam'.*gd.*mirror.*ngd.*polyak"):
        get_optimizer("adam")
    assert set(OPTIMIZERS) == {"gd", "ngd", "polyak", "mirror"}


def test_global_norm_survives_gradients_whose_squares_underflow() -> None:
    tiny = [torch.full((3,), 1e-200, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
    assert global_norm(tiny) == pytest.approx(math.sqrt(3) * 1e-200, rel=1e-12)


def test_gd_moves_lr_times_minus_the_gradient() -> None:
    params, grads = _tensors(0), _tensors(1)
    expected = [w - 0.7 * g for w, g in zip(params, grads, strict=True)]
    get_optimizer("gd").update(params, grads, 0.0, StepConfig(lr=0.7))
    for w, e in zip(params, expected, strict=True):
        assert torch.allclose(w, e, rtol=0, atol=1e-15)


def test_ngd_moves_lr_along_minus_the_gradient() -> None:
    params, grads = _tensors(0), _tensors(1)
    before = [w.clone() for w in params]
    get_optimizer("ngd").update(params, grads, 0.0, StepConfig(lr=0.3))
    moved = [b - w for b, w in zip(before, params, strict=True)]
    assert global_norm(moved) == pytest.approx(0.3)
    assert torch.allclose(moved[0] / 0.3, grads[0] / global_norm(grads))


def test_polyak_step_is_gap_over_squared_gradient_norm() -> None:
    params, grads = _tensors(0), _tensors(1)
    before = [w.clone() for w in params]
    get_optimizer("polyak").update(params, grads, 0.2, StepConfig(lr=0.5))
    eta = 0.5 * 0.2 / global_norm(grads) ** 2
    for b, w, g in zip(before, params, grads, strict=True):
        assert torch.allclose(b - w, eta * g)


@pytest.mark.parametrize("potential", POTENTIALS)
def test_mirror_with_p_two_is_gradient_descent(potential: str) -> None:
    params, grads = _tensors(0), _tensors(1)
    expected = [w - 0.1 * g for w, g in zip(params, grads, strict=True)]
    get_optimizer("mirror").update(
        params, grads, 0.0, StepConfig(lr=0.1, p=2.0, potential=potential)
    )
    for w, e in zip(params, expected, strict=True):
        assert torch.allclose(w, e)


@pytest.mark.parametrize("potential", POTENTIALS)
def test_mirror_step_satisfies_the_dual_update(potential: str) -> None:
    """grad psi(w_new) = grad psi(w) - lr * g, checked with psi's gradient by autograd."""
    p, lr = 3.0, 0.05
    params, grads = _tensors(0), _tensors(1)

    def grad_psi(w: torch.Tensor) -> torch.Tensor:
        w = w.detach().requires_grad_(True)
        norm = torch.linalg.vector_norm(w, ord=p)
        psi = norm**p / p if potential == "power" else norm**2 / 2
        return torch.autograd.grad(psi, w)[0]

    expected = [grad_psi(w) - lr * g for w, g in zip(params, grads, strict=True)]
    get_optimizer("mirror").update(params, grads, 0.0, StepConfig(lr=lr, p=p, potential=potential))
    for w, e in zip(params, expected, strict=True):
        assert torch.allclose(grad_psi(w), e, atol=1e-10)


def test_mirror_rejects_p_outside_one_to_infinity() -> None:
    with pytest.raises(ValueError, match="1 < p < inf"):
        get_optimizer("mirror").update(_tensors(0), _tensors(1), 0.0, StepConfig(lr=1, p=1.0))
