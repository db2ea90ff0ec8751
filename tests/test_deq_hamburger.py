"""NMF by multiplicative updates and the Hamburger block."""

from __future__ import annotations

import torch

from jobs.deq.hamburger import Hamburger, mu_step, nmf


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


def test_nmf_matches_its_steps_and_differentiates_through_the_last_only() -> None:
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
        few = nmf(x, bases, steps=2)
    count_few, saved = len(saved), []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        many = nmf(x, bases, steps=12)
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
