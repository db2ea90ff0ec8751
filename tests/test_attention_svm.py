"""The attention SVM: its constraints hold and each solution is the smallest in its own norm."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.attention.data import make_dataset
from jobs.attention.metrics import matrix_norm
from jobs.attention.svm import NUCLEAR, solve_att_svm

DATA = make_dataset(n=8, T=6, d=8, seed=0)
NORMS = (2.0, 3.0, 1.5, NUCLEAR)


@pytest.fixture(scope="module")
def solutions() -> dict[float | str, np.ndarray]:
    return {norm: solve_att_svm(DATA, norm) for norm in NORMS}


def test_dataset_has_one_optimal_token_per_sequence_and_tied_others() -> None:
    scores = DATA.y[:, None] * (DATA.X @ DATA.v)
    rows = np.arange(DATA.n)
    assert np.array_equal(scores.argmax(axis=1), DATA.opt)
    np.testing.assert_allclose(scores[rows, DATA.opt], 1.0)
    others = np.delete(scores.ravel(), rows * DATA.T + DATA.opt)
    np.testing.assert_allclose(others, 0.0, atol=1e-12)


def test_dataset_is_seeded() -> None:
    again = make_dataset(n=8, T=6, d=8, seed=0)
    other = make_dataset(n=8, T=6, d=8, seed=1)
    assert np.array_equal(again.X, DATA.X) and np.array_equal(again.z, DATA.z)
    assert not np.array_equal(other.X, DATA.X)


@pytest.mark.parametrize("norm", NORMS)
def test_svm_constraints_hold_with_support_tokens(solutions, norm) -> None:
    margins = DATA.constraint_matrix() @ solutions[norm].ravel()
    assert margins.shape == (DATA.n * (DATA.T - 1),)
    assert margins.min() >= 1 - 1e-7
    assert margins.min() <= 1 + 1e-6  # the margin is tight: some tokens are support tokens


@pytest.mark.parametrize("norm", NORMS)
def test_each_solution_is_smallest_in_its_own_norm(solutions, norm) -> None:
    own = matrix_norm(solutions[norm], norm)
    for other in NORMS:
        # every solution is feasible, so none may beat the minimiser in the minimiser's norm
        assert own <= matrix_norm(solutions[other], norm) + 1e-6
        if other != norm:
            assert not np.allclose(solutions[other], solutions[norm], atol=1e-3)


def test_infeasible_svm_is_reported() -> None:
    with pytest.raises(ValueError, match="infeasible"):
        solve_att_svm(make_dataset(n=20, T=6, d=2, seed=0))


def test_norm_must_be_a_p_above_one_or_nuclear() -> None:
    with pytest.raises(ValueError, match="p > 1"):
        solve_att_svm(DATA, 1.0)
