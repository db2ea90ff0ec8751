"""Seeded token-selection datasets: n sequences of T tokens in d dims, one optimal token each.

The paper-style separable setting: a unit head ``v`` scores token ``t`` of sequence ``i`` by
``gamma_it = y_i * v @ x_it``. The optimal token carries ``score`` along ``v`` (signed by the
label), every other token carries none, so all non-optimal tokens tie (the equal-score condition
of the papers' global directional-convergence results for the attention SVM). The
remaining coordinates are isotropic Gaussian noise orthogonal to ``v``. Each sequence has its own
query token ``z_i`` (the cross-attention form ``softmax(X_i W z_i)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TokenSelectionData:
    """Tokens ``X`` (n, T, d), queries ``z`` (n, d), labels ``y`` (n,), unit head ``v`` (d,) and
    the optimal token's index ``opt`` (n,)."""

    X: np.ndarray
    z: np.ndarray
    y: np.ndarray
    v: np.ndarray
    opt: np.ndarray

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def T(self) -> int:
        return self.X.shape[1]

    @property
    def d(self) -> int:
        return self.X.shape[2]

    def constraint_matrix(self) -> np.ndarray:
        """Rows ``vec((x_opt - x_t) z_i^T)`` (row-major), one per non-optimal token (n(T-1), d*d).

        The attention-SVM constraints read ``A @ vec(W) >= 1``.
        """
        rows = []
        for i in range(self.n):
            x_opt = self.X[i, self.opt[i]]
            for t in range(self.T):
                if t != self.opt[i]:
                    rows.append(np.outer(x_opt - self.X[i, t], self.z[i]).ravel())
        return np.asarray(rows)


def make_dataset(*, n: int, T: int, d: int, seed: int, score: float = 1.0) -> TokenSelectionData:
    """Draw the separable equal-score dataset described in the module docstring."""
    if n < 1 or T < 2 or d < 2:
        raise ValueError(f"need n >= 1, T >= 2, d >= 2; got n={n}, T={T}, d={d}")
    if score <= 0:
        raise ValueError(f"score must be positive, got {score}")
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(d)
    v /= np.linalg.norm(v)
    noise = rng.standard_normal((n, T, d)) / np.sqrt(d)
    X = noise - (noise @ v)[..., None] * v
    y = rng.choice([-1.0, 1.0], size=n)
    opt = rng.integers(0, T, size=n)
    X[np.arange(n), opt] += (y * score)[:, None] * v
    z = rng.standard_normal((n, d)) / np.sqrt(d)
    return TokenSelectionData(X=X, z=z, y=y, v=v, opt=opt)
