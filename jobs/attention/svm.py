"""The (l_p- / nuclear-norm) max-margin attention SVM, solved as a convex program with cvxpy.

Att-SVM:  min ||W||  s.t.  (x_{i,opt_i} - x_{i,t})^T W z_i >= 1  for all i and t != opt_i,
with ||W|| the entrywise l_p norm (p = 2: Frobenius, the GD limit; p != 2: the l_p mirror-descent
limit) or the nuclear norm (the limit of gradient descent on a factorised W = K Q^T).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from jobs.attention.data import TokenSelectionData

NUCLEAR = "nuc"


def solve_att_svm(data: TokenSelectionData, norm: float | str = 2.0) -> np.ndarray:
    """Return the max-margin ``W`` (d, d) for ``norm``: a p in (1, inf) or ``"nuc"``."""
    d = data.d
    A = data.constraint_matrix()
    w = cp.Variable(d * d)
    if norm == NUCLEAR:
        objective = cp.normNuc(cp.reshape(w, (d, d), order="C"))
    elif isinstance(norm, (int, float)) and not isinstance(norm, bool) and norm > 1:
        objective = cp.pnorm(w, float(norm), approx=False)  # exact power cones, any real p
    else:
        raise ValueError(f"Att-SVM norm must be a p > 1 or {NUCLEAR!r}, got {norm!r}")
    problem = cp.Problem(cp.Minimize(objective), [A @ w >= 1])
    problem.solve(solver=cp.CLARABEL)
    if problem.status != cp.OPTIMAL or w.value is None:
        raise ValueError(
            f"Att-SVM ({norm}) not solved: status {problem.status}; the SVM needs d*d well above "
            f"n*(T-1) constraints (have d*d={d * d}, n*(T-1)={A.shape[0]})"
        )
    return np.asarray(w.value).reshape(d, d)
