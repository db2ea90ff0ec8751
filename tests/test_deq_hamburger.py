"""NMF by multiplicative updates and the Hamburger block."""

from __future__ import annotations

import pytest
import torch

from jobs.deq.cells import HamburgerCell
from jobs.deq.core import DEQConfig, equilibrium
from jobs.deq.hamburger import Hamburger, mu_step, nmf
from jobs.deq.solvers import SolverOptions


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 10, 30, generator=gen, dtype=torch.float64)
    bases = torch.rand(10, 4, generator=gen, dtype=torch.float64)
    return x, bases


def test_nmf_keeps_factors_nonnegative_and_error_non_increasing() -> None:
    x, bases = _data()
    d = bases.expand(3, -1, -1)
    coef = torch.softmax(d.transpose(1, 2) @ x, dim=1)
    errors = [torch.linalg.matrix_norm(x - d @ coef)]
    for _ in range(30):
        d, coef = mu_step(x, d, coef, eps=1e-12)
        assert (d >= 0).all() and (coef >= 0).all()
        errors.append(torch.linalg.matrix_norm(x - d @ coef))
    errors_t = torch.stack(errors)  # (steps + 1, batch)
    assert (errors_t[1:] <= errors_t[:-1] * (1 + 1e-12)).all()
    assert (errors_t[-1] < 0.8 * errors_t[0]).all()


def test_nmf_matches_its_steps_and_one_step_records_the_last_only() -> None:
    x, bases = _data(1)
    x.requires_grad_()
    d, coef = nmf(x, bases, steps=5, eps=1e-12)
    ref_d, ref_coef = bases.expand(3, -1, -1), None
    with torch.no_grad():
        ref_coef = torch.softmax(ref_d.transpose(1, 2) @ x, dim=1)
        for _ in range(5):
            ref_d, ref_coef = mu_step(x, ref_d, ref_coef, eps=1e-12)
    assert torch.allclose(d, ref_d) and torch.allclose(coef, ref_coef)

    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        few = nmf(x, bases, steps=2, grad="one-step")
    count_few, saved = len(saved), []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        many = nmf(x, bases, steps=12, grad="one-step")
    assert len(saved) == count_few  # one step recorded however many run
    (many[0] @ many[1]).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert few[0].requires_grad


def test_hamburger_block_shapes_gradients_and_determinism() -> None:
    torch.manual_seed(0)
    block = Hamburger(8, rank=3, steps=4)
    h = torch.randn(2, 16, 8, requires_grad=True)
    out = block(h)
    assert out.shape == h.shape
    block.eval()  # training mode refines the spectral-norm estimate at every call
    assert torch.equal(block(h), block(h))  # a fixed dictionary: a deterministic function
    out.square().sum().backward()
    assert h.grad is not None
    assert all(p.grad is not None for p in block.parameters())


def _cell(grad: str, seed: int = 0) -> tuple[HamburgerCell, torch.Tensor]:
    """A float64 Hamburger cell (weight norm: no power iteration to perturb differences)."""
    torch.manual_seed(seed)
    cell = HamburgerCell(
        Hamburger(6, rank=3, steps=5, norm="weight", grad=grad), activation_name="tanh"
    ).double()
    u = torch.rand(2, 9, 6, dtype=torch.float64)
    return cell, u


def _column_errors(grad: str) -> torch.Tensor:
    """Relative error of each Jacobian column of the cell's f against central differences."""
    cell, u = _cell(grad)
    f = cell.bind(u)
    z = torch.rand(1, 9, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f1 = lambda v: f(torch.cat([v.view(1, 9, 6), z]))[0].reshape(-1)  # noqa: E731
    point = z.reshape(-1) * 0.5
    jac = torch.autograd.functional.jacobian(f1, point)
    eps = 1e-6
    errors = []
    for j in range(point.numel()):
        step = torch.zeros_like(point)
        step[j] = eps
        column = (f1(point + step) - f1(point - step)) / (2 * eps)
        errors.append(
            torch.linalg.vector_norm(jac[:, j] - column) / torch.linalg.vector_norm(column)
        )
    return torch.stack(errors)


def test_full_nmf_gradient_is_the_jacobian_of_the_k_step_map() -> None:
    assert _column_errors("full").max() < 0.01
    assert _column_errors("one-step").max() > 0.05  # documented: the last update's only


@pytest.mark.parametrize("seed", range(2))
def test_implicit_gradient_of_a_hamburger_deq_matches_finite_differences(seed: int) -> None:
    cell, u = _cell("full", seed)
    tight = SolverOptions(tol=1e-12, max_iter=500, memory=10)
    cfg = DEQConfig(forward=tight, backward=tight)
    target = torch.randn(u.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def loss() -> torch.Tensor:
        z, _ = equilibrium(cell.bind(u), torch.zeros_like(u), cfg)
        return (z * target).sum()

    params = list(cell.parameters())
    grads = torch.autograd.grad(loss(), params)
    gen = torch.Generator().manual_seed(3)
    directions = [torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in params]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, directions, strict=True))
    eps = 1e-6
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            for p, d in zip(params, directions, strict=True):
                p.add_(sign * eps * d)
            values.append(float(loss()))
            for p, d in zip(params, directions, strict=True):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic - numeric) <= 0.01 * abs(numeric), (analytic, numeric)
