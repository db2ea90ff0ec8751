"""How close a key-query matrix is, in direction, to a max-margin attention-SVM solution."""

from __future__ import annotations

import numpy as np

from jobs.attention.svm import NUCLEAR


def matrix_norm(W: np.ndarray, norm: float | str) -> float:
    """Entrywise l_p norm of ``W`` (p a number) or its nuclear norm (``"nuc"``)."""
    if norm == NUCLEAR:
        return float(np.linalg.norm(W, ord="nuc"))
    return float(np.linalg.norm(W.ravel(), ord=norm))


def cosine(W: np.ndarray, ref: np.ndarray) -> float:
    """Cosine similarity of ``W`` and ``ref`` as vectors (0 when ``W`` is zero)."""
    norm = np.linalg.norm(W) * np.linalg.norm(ref)
    return float(np.vdot(W, ref) / norm) if norm > 0 else 0.0


def lp_distance(W: np.ndarray, ref: np.ndarray, p: float) -> float:
    """``|| W / ||W||_p - ref / ||ref||_p ||_p`` (entrywise l_p; 2 for a zero ``W``)."""
    norm = matrix_norm(W, p)
    if norm == 0:
        return 2.0
    return matrix_norm(W / norm - ref / matrix_norm(ref, p), p)


def normalised_margin(W: np.ndarray, A: np.ndarray, norm: float | str = 2.0) -> float:
    """``min_{i,t} (x_opt - x_t)^T W z_i / ||W||``: the SVM margin the direction of ``W`` attains.

    ``A`` is :meth:`TokenSelectionData.constraint_matrix`; at the SVM solution ``W_mm`` this is
    ``1 / ||W_mm||``.
    """
    size = matrix_norm(W, norm)
    return float((A @ W.ravel()).min() / size) if size > 0 else 0.0
