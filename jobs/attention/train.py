"""The sweep entry point ``jobs.attention.train:run``: one attention implicit-bias run."""

from __future__ import annotations

from typing import Any

import numpy as np

from jobs.attention.experiment import Diverged, simulate
from jobs.attention.params import parse_params
from orchestrator import Trial, TrialDiverged


def run(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Train with ``params`` (see :class:`jobs.attention.params.Config`); return final metrics.

    Reports the per-step metrics every ``report_every`` steps and at the last step, and stores
    ``trajectory.csv`` (cosine to the target, l2 and l_p SVMs at every step) and
    ``solutions.npz`` (the trained ``W`` and the SVM solutions) with the trial.
    """
    cfg = parse_params(params)
    try:
        out, refs = simulate(
            cfg, device=trial.device, report=lambda step, metrics: trial.report(step, **metrics)
        )
    except Diverged as err:
        raise TrialDiverged(f"attention/{cfg.optimizer}: {err}") from err
    trajectory = trial.workdir / "trajectory.csv"
    np.savetxt(
        trajectory,
        np.column_stack([out.alignment, out.alignment_l2, out.alignment_lp]),
        delimiter=",",
        header="alignment,alignment_l2,alignment_lp",
        comments="",
        fmt="%.8f",
    )
    solutions = trial.workdir / "solutions.npz"
    extra = {} if refs.nuc is None else {"svm_nuc": refs.nuc}
    np.savez(solutions, W=out.W, svm_l2=refs.l2, svm_lp=refs.lp, **extra)
    trial.log_artifact(trajectory)
    trial.log_artifact(solutions)
    return out.final
