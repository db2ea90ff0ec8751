"""Root solvers: agreement, acceleration, batching, divergence, the registry."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from jobs.deq.solvers import (
    SolverOptions,
    get_solver,
    register_solver,
    solve,
    solver_names,
)

SOLVERS = ("forward", "anderson", "broyden")
Func = Callable[[torch.Tensor], torch.Tensor]


def _contraction(dim: int, norm: float, *, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    return w * (norm / torch.linalg.matrix_norm(w, ord=2))


def _hard_symmetric(dim: int, *, seed: int = 0) -> torch.Tensor:
    """Symmetric W with eigenvalues spread over [-0.99, 0.99]: slow for plain iteration."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    return (q * torch.linspace(-0.99, 0.99, dim, dtype=torch.float64)) @ q.T


def _monotone(dim: int, *, seed: int = 0) -> tuple[Func, torch.Tensor]:
    """A monotone-operator DEQ: f(z) = relu(K z + c), K = 0.99 W / |W|_2 with
    W = 0.95 I - A^T A + B - B^T (Winston & Kolter's parametrisation, A and B small)."""
    gen = torch.Generator().manual_seed(seed)
    a = 0.1 * torch.randn(dim, dim, generator=gen, dtype=torch.float64) / dim**0.5
    b = 0.1 * torch.randn(dim, dim, generator=gen, dtype=torch.float64) / dim**0.5
    w = 0.95 * torch.eye(dim, dtype=torch.float64) - a.T @ a + b - b.T
    k = 0.99 * w / torch.linalg.matrix_norm(w, ord=2)
    c = torch.randn(4, dim, generator=gen, dtype=torch.float64)
    return (lambda z: torch.relu(z @ k.T + c)), torch.zeros_like(c)


def _hard_linear(dim: int, *, seed: int = 0) -> tuple[Func, torch.Tensor]:
    w = _hard_symmetric(dim, seed=seed)
    b = torch.randn(4, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (lambda z: z @ w.T + b), torch.zeros_like(b)


@pytest.mark.parametrize("kind", ["linear", "tanh"])
def test_solvers_agree_on_the_fixed_point_of_a_contraction(kind: str) -> None:
    w = _contraction(32, 0.9)
    b = torch.randn(4, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        y = z @ w.T + b
        return y if kind == "linear" else torch.tanh(y)

    z0 = torch.zeros_like(b)
    results = {m: solve(f, z0, m, tol=1e-10, max_iter=500, memory=20) for m in SOLVERS}
    if kind == "linear":
        exact = torch.linalg.solve(torch.eye(32, dtype=torch.float64) - w, b.T).T
        results["exact"] = (exact, None)
    for method, (z, stats) in results.items():
        if stats is not None:
            assert stats.all_converged, (method, stats.trace[-3:])
            assert torch.all(stats.rel_residual < 1e-10)
        assert torch.allclose(z, results["forward"][0], atol=1e-5, rtol=0), method


def test_anderson_needs_fewer_evaluations_than_forward_iteration() -> None:
    w = _hard_symmetric(128)
    b = torch.randn(2, 128, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z0 = torch.zeros_like(b)
    nfe = {
        m: solve(lambda z: z @ w.T + b, z0, m, tol=1e-5, max_iter=3000, memory=5)[1].nfe
        for m in ("forward", "anderson")
    }
    assert nfe["anderson"] < 0.5 * nfe["forward"], nfe


@pytest.mark.parametrize("problem", [_hard_linear, _monotone])
def test_broyden_converges_at_every_small_memory_in_no_more_evaluations_than_forward(
    problem: Callable[[int], tuple[Func, torch.Tensor]],
) -> None:
    f, z0 = problem(64)
    forward = solve(f, z0, "forward", tol=1e-5, max_iter=3000)[1].nfe
    for memory in range(1, 11):
        _, stats = solve(f, z0, "broyden", tol=1e-5, max_iter=3000, memory=memory)
        assert stats.all_converged, memory
        assert stats.nfe <= forward, (memory, stats.nfe, forward)


@pytest.mark.parametrize("seed", range(3))
def test_broyden_with_one_pair_spends_no_more_evaluations_than_forward_on_a_monotone_deq(
    seed: int,
) -> None:
    # One pair sees only the slowest mode there and proposes steps 10-20x the fixed-point step;
    # memory 1 then takes the fixed-point steps, not trust-region cuts that cost evaluations.
    f, z0 = _monotone(64, seed=seed)
    forward = solve(f, z0, "forward", tol=1e-5, max_iter=3000)[1].nfe
    _, stats = solve(f, z0, "broyden", tol=1e-5, max_iter=3000, memory=1)
    assert stats.all_converged and stats.nfe <= forward, (stats.nfe, forward)


@pytest.mark.parametrize("seed", range(6))
def test_broyden_solves_a_small_linear_problem_once_its_memory_spans_the_space(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 8, generator=gen, dtype=torch.float64)
    w = 0.95 * w / torch.linalg.eigvals(w).abs().max()  # spectral radius 0.95, norm above 1
    b = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    f, z0 = (lambda z: z @ w.T + b), torch.zeros_like(b)
    forward = solve(f, z0, "forward", tol=1e-10, max_iter=3000)[1].nfe
    for memory in (1, 2, 4):  # a window smaller than the space: converges, never stalls
        _, stats = solve(f, z0, "broyden", tol=1e-10, max_iter=3000, memory=memory)
        # memory 1 keeps to steps at most 6x the fixed-point step: one more evaluation than
        # forward's on seed 5 (393 vs 392)
        limit = 1.01 * forward if memory == 1 else forward
        assert stats.all_converged and stats.nfe <= limit, (memory, stats.nfe, forward)
    _, stats = solve(f, z0, "broyden", tol=1e-10, max_iter=3000, memory=10)
    assert stats.all_converged and stats.nfe <= 2 * 8 + 4  # the secant model becomes exact


def _window_systems(gram: np.ndarray, m: int, n: int) -> np.ndarray:
    """``[S^T Y, S^T S]`` of the first ``n`` pairs from the Gram matrix of ``s_i, p_i``."""
    ss = gram[:, :n, :n]
    return np.stack([gram[:, :n, m : m + n] - ss, ss], axis=1)


def test_compiled_window_solve_agrees_with_lapack_and_zeroes_singular_systems() -> None:
    from jobs.deq.solvers._trust_region import solve_windows

    rng = np.random.default_rng(0)
    batch, m = 5, 7
    rows = rng.standard_normal((batch, 2 * m, 40))
    rows[0, 1] = rows[0, 0]  # sample 0: two equal steps, both systems singular
    gram = rows @ rows.transpose(0, 2, 1)
    proj = rng.standard_normal((batch, 2 * m))
    for n in (1, 4, m):
        coef = np.full((batch, 2, n), np.nan)
        solve_windows(gram, proj, m, n, coef)
        rhs = np.repeat(proj[:, None, :n, None], 2, axis=1)
        first = 1 if n > 1 else 0  # with one pair sample 0 is regular
        expected = np.linalg.solve(_window_systems(gram, m, n)[first:], rhs[first:])[..., 0]
        np.testing.assert_allclose(coef[first:], expected, rtol=1e-9, atol=1e-12)
        if first:
            assert not coef[0].any()


def test_broyden_with_a_window_past_the_compiled_solve_converges_like_a_small_one() -> None:
    from jobs.deq.solvers.broyden import COMPILED_SOLVE_UP_TO

    f, z0 = _hard_linear(64)
    forward = solve(f, z0, "forward", tol=1e-8, max_iter=3000)
    for memory in (COMPILED_SOLVE_UP_TO, COMPILED_SOLVE_UP_TO + 8):  # compiled, then LAPACK
        z, stats = solve(f, z0, "broyden", tol=1e-8, max_iter=3000, memory=memory)
        assert stats.all_converged and stats.nfe < 0.5 * forward[1].nfe, (memory, stats.nfe)
        torch.testing.assert_close(z, forward[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_broyden_keeps_the_dtype_of_its_problem(dtype: torch.dtype) -> None:
    w = _contraction(16, 0.9).to(dtype)
    b = torch.ones(3, 16, dtype=dtype)
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    z, stats = solve(lambda z: torch.tanh(z @ w.T + b), torch.zeros_like(b), "broyden",
                     tol=tol, max_iter=200)  # fmt: skip
    assert z.dtype == dtype and stats.all_converged


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_anderson_with_memory_one_is_damped_forward_iteration(beta: float) -> None:
    w = _contraction(16, 0.9).double()
    b = torch.randn(3, 16, dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ w.T + b)

    steps = 12
    z = torch.zeros_like(b)
    for _ in range(steps - 1):  # the solver's last evaluation only checks the residual
        z = z + beta * (f(z) - z)
    best, stats = solve(f, torch.zeros_like(b), "anderson", tol=1e-30, max_iter=steps,
                        memory=1, beta=beta)  # fmt: skip
    assert stats.nfe == steps
    torch.testing.assert_close(best, z, rtol=1e-12, atol=1e-12)  # residuals fall: last is best


def test_stats_are_per_sample_and_the_trace_is_monotone() -> None:
    w = _contraction(16, 0.5).float()
    scale = torch.tensor([[1.0], [10.0], [100.0]])
    b = torch.randn(3, 16) * scale
    z, stats = solve(
        lambda z: torch.tanh(z @ w.T + b), torch.zeros(3, 16), "anderson", tol=1e-5, max_iter=100
    )
    assert stats.abs_residual.shape == stats.rel_residual.shape == stats.converged.shape == (3,)
    assert stats.converged.all() and stats.nfe == len(stats.trace)
    assert all(a >= b for a, b in zip(stats.trace, stats.trace[1:], strict=False))
    assert z.shape == b.shape


def test_shapes_beyond_two_dims_are_flattened_per_sample() -> None:
    x = torch.rand(2, 3, 4, 5)
    z, stats = solve(lambda z: 0.5 * z + x, torch.zeros_like(x), "broyden", tol=1e-8, max_iter=50)
    assert z.shape == x.shape and stats.all_converged
    assert torch.allclose(z, 2 * x, atol=1e-6)


def test_tolerance_modes_and_max_iter() -> None:
    f = lambda z: 0.9 * z + 1.0  # noqa: E731
    z0 = torch.zeros(1, 1, dtype=torch.float64)
    _, capped = solve(f, z0, "forward", tol=1e-12, max_iter=7)
    assert capped.nfe == 7 and not capped.converged.any() and not capped.diverged
    z, absolute = solve(f, z0, "forward", tol=1e-3, max_iter=1000, stop_mode="abs")
    assert absolute.abs_residual.item() < 1e-3 and abs(z.item() - 10) < 1e-2


@pytest.mark.parametrize("method", SOLVERS)
def test_nan_or_inf_stops_at_once_and_reports_divergence(method: str) -> None:
    calls = []

    def f(z: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return 0.5 * torch.tanh(z) + (math.nan if len(calls) == 3 else 1.0)

    z, stats = solve(f, torch.zeros(2, 3), method, tol=1e-12, max_iter=100)
    assert stats.diverged and "non-finite" in stats.reason
    assert stats.nfe == 3 == len(calls)
    assert torch.isfinite(z).all()  # the last finite iterate


def test_an_expanding_map_overflows_into_divergence() -> None:
    w = 3.0 * torch.eye(8)
    _, stats = solve(lambda z: z @ w + 1.0, torch.zeros(2, 8), "forward", tol=1e-6, max_iter=500)
    assert stats.diverged and stats.nfe < 500


def test_registry_lists_known_names_and_registers_new_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown solver 'andersen'; known: \['anderson'"):
        get_solver("andersen")
    with pytest.raises(ValueError, match="already registered"):
        register_solver("forward", get_solver("anderson"))

    def halving(f, z0, opts: SolverOptions):  # type: ignore[no-untyped-def]
        return get_solver("forward")(lambda z: 0.5 * (z + f(z)), z0, opts)

    register_solver("test-halving", halving)
    assert "test-halving" in solver_names()
    z, _ = solve(lambda z: 0.5 * z + 1, torch.zeros(1, 1), "test-halving", tol=1e-9, max_iter=200)
    assert abs(z.item() - 2) < 1e-6


def test_bad_options_name_the_rule() -> None:
    with pytest.raises(ValueError, match="stop_mode in"):
        solve(lambda z: z, torch.zeros(1, 1), "forward", tol=1e-3, max_iter=3, stop_mode="max")
    with pytest.raises(ValueError, match="memory >= 1"):
        SolverOptions(memory=0)
