"""Broyden's per-sample trust region on the host, compiled with Numba.

The arithmetic of one Broyden step after ``f`` (two ``n x n`` solves, the dogleg, the radius
update) is a few hundred floating-point operations per sample. As ~50 NumPy calls on
``(B, 2m, 2m)`` arrays it cost 250-290 us a step on one CPU thread, more than ``f`` of a
512-wide monotone DEQ; compiled loops over the samples cost a few microseconds
(``bench/deq_broyden_cost.py``), and Broyden makes one call a step (:func:`take_in_and_step`)
where the window fits the compiled solve. Functions compile on first use and are cached on disk.

Arrays, per sample ``b`` (float64 unless said): ``gram[b]`` the ``2m x 2m`` inner products of
the window's rows ``s_1..s_m, p_1..p_m`` (``p = s + y``); ``proj[b]`` their inner products with
the current residual ``g``. The dogleg's ``state`` is the tuple ``(gg, delta_sq, rejected, t,
inside, model_sq)``: ``gg[b] = |g|^2``, ``delta_sq[b]`` the squared radius, ``rejected[b]``
(int64) consecutive rejected steps; ``t[b]``, ``inside[b]`` (bool) and ``model_sq[b]`` describe
the step being tried.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

Array = NDArray[np.float64]
State = tuple[Array, Array, NDArray[np.int64], Array, NDArray[np.bool_], Array]

PLAIN_AFTER = 2  # consecutive rejected steps after which the fixed-point step is taken
SHRINK_BELOW = 0.5  # actual / predicted decrease under which the radius halves
EXPAND_ABOVE = 0.9  # ... over which a step that hit the boundary doubles it
MEMORY1_MAX_STRETCH = 6.0  # memory 1: longest quasi-Newton step tried, in fixed-point steps
TINY = np.finfo(np.float64).tiny


@njit(cache=True)
def _solve_into(a: Array, r: Array, out: Array) -> None:
    """``out = a^-1 r`` by Gaussian elimination with partial pivoting (``a`` and ``r`` are
    overwritten); zeros if a pivot is exactly zero, and in place of any non-finite entry."""
    n = a.shape[0]
    for k in range(n):
        pivot = k
        for i in range(k + 1, n):
            if abs(a[i, k]) > abs(a[pivot, k]):
                pivot = i
        if a[pivot, k] == 0.0:
            out[:] = 0.0
            return
        if pivot != k:
            for j in range(k, n):
                a[k, j], a[pivot, j] = a[pivot, j], a[k, j]
            r[k], r[pivot] = r[pivot], r[k]
        for i in range(k + 1, n):
            factor = a[i, k] / a[k, k]
            for j in range(k + 1, n):
                a[i, j] -= factor * a[k, j]
            r[i] -= factor * r[k]
    for i in range(n - 1, -1, -1):
        total = r[i]
        for j in range(i + 1, n):
            total -= a[i, j] * out[j]
        out[i] = total / a[i, i]
    for i in range(n):
        if not np.isfinite(out[i]):
            out[i] = 0.0


@njit(cache=True)
def solve_windows(gram: Array, proj: Array, m: int, n: int, coef: Array) -> None:
    """Per sample, ``(S^T Y)^-1 S^T g`` and ``(S^T S)^-1 S^T g`` over the first ``n`` pairs,
    into ``coef[:, :, :n]`` (``coef`` is ``(B, 2, >= n)``; ``S^T Y = S^T P - S^T S``)."""
    a = np.empty((n, n))
    r = np.empty(n)
    for b in range(gram.shape[0]):
        for which in range(2):
            for i in range(n):
                for j in range(n):
                    a[i, j] = gram[b, i, j] if which else gram[b, i, m + j] - gram[b, i, j]
                r[i] = proj[b, i]
            _solve_into(a, r, coef[b, which, :n])


@njit(cache=True)
def dogleg(
    gram: Array,
    proj: Array,
    coef: Array,
    m: int,
    n: int,
    state: State,
    weights: NDArray[np.floating],
) -> None:
    """Each sample's step ``g - P w`` from the fixed-point step towards the quasi-Newton one,
    as far as the radius allows: writes ``w`` into ``weights[:, :n]`` and sets ``t``,
    ``inside``, ``model_sq``. ``coef`` holds :func:`solve_windows`' answer."""
    gg, delta_sq, rejected, t, inside, model_sq = state
    for b in range(gram.shape[0]):
        ee = model = ge = 0.0  # |P e|^2, |P d|^2, g . P e
        for i in range(n):
            row_e = row_d = 0.0
            for j in range(n):
                row_e += gram[b, m + i, m + j] * coef[b, 0, j]
                row_d += gram[b, m + i, m + j] * coef[b, 1, j]
            ee += coef[b, 0, i] * row_e
            model += coef[b, 1, i] * row_d
            ge += coef[b, 0, i] * proj[b, m + i]
        radius_sq = max(delta_sq[b], gg[b])
        newton_sq = gg[b] - 2 * ge + ee  # |g - P e|^2
        plain = rejected[b] >= PLAIN_AFTER or not ee > 0
        if m == 1 and newton_sq > MEMORY1_MAX_STRETCH**2 * gg[b]:
            plain = True
        inside[b] = newton_sq <= radius_sq and not plain
        if inside[b]:
            t[b] = 1.0
        elif plain:
            t[b] = 0.0
        else:  # ee > 0
            root = np.sqrt(max(ge**2 + ee * (radius_sq - gg[b]), 0.0))
            t[b] = min(max((ge + root) / ee, 0.0), 1.0)
        model_sq[b] = model
        for i in range(n):
            weights[b, i] = t[b] * coef[b, 0, i]


@njit(cache=True)
def take_in(
    products: Array,
    slot: int,
    new: int,
    cur: int,
    m: int,
    gram: Array,
    proj: Array,
    state: State,
    accept: NDArray[np.bool_],
) -> bool:
    """Take in the inner products ``products`` (B, 3, 2m + 2; float32 or float64) of the new
    pair's rows ``s``, ``p`` and of the trial point's residual with every row; set ``accept``
    per sample and return whether every sample accepted the step."""
    gg, delta_sq, rejected, t, inside, model_sq = state
    everyone = True
    for b in range(products.shape[0]):
        for j in range(2 * m):  # the rows and columns of s and p, in this order
            gram[b, slot, j] = products[b, 0, j]
            gram[b, j, slot] = products[b, 0, j]
        for j in range(2 * m):
            gram[b, m + slot, j] = products[b, 1, j]
            gram[b, j, m + slot] = products[b, 1, j]
        gg_new, length_sq = products[b, 2, new], products[b, 0, slot]
        predicted = max(gg[b] - (1 - t[b]) ** 2 * model_sq[b], TINY)
        ratio = (gg[b] - gg_new) / predicted
        if ratio < SHRINK_BELOW:
            delta_sq[b] = 0.25 * length_sq
        elif ratio > EXPAND_ABOVE and not inside[b]:
            delta_sq[b] = 4 * max(delta_sq[b], length_sq)
        accept[b] = gg_new < gg[b] or t[b] == 0  # the fixed-point step (t = 0) always goes
        if accept[b]:
            rejected[b] = 0
            gg[b] = gg_new
            proj[b, : 2 * m] = products[b, 2, : 2 * m]
        else:
            everyone = False
            rejected[b] += 1
            proj[b, slot] = products[b, 0, cur]  # s . g, p . g at the current point
            proj[b, m + slot] = products[b, 1, cur]
    return everyone


@njit(cache=True)
def take_in_and_step(
    products: Array,
    slot: int,
    new: int,
    cur: int,
    m: int,
    gram: Array,
    proj: Array,
    state: State,
    accept: NDArray[np.bool_],
    n: int,
    coef: Array,
    weights: NDArray[np.floating],
) -> bool:
    """:func:`take_in`, then the next step over the first ``n`` pairs (:func:`solve_windows`
    and :func:`dogleg`) in the same call; returns whether every sample accepted."""
    everyone = take_in(products, slot, new, cur, m, gram, proj, state, accept)
    solve_windows(gram, proj, m, n, coef)
    dogleg(gram, proj, coef, m, n, state, weights)
    return everyone
