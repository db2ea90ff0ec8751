"""A study's results in brief: counts per state, best trials or the Pareto front, parent run.

Computed where the study is open: by the study hub at the end of a sweep (so the driver does
not open the storage again) and by the readers in :mod:`orchestrator.results`.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator.names import StudyAttr, TrialAttr
from orchestrator.study._study import count_states

__all__ = ["best_trials", "describe_trial", "metric_names", "state_counts", "study_summary"]


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state; interrupted trials (queued to re-run) are counted as INTERRUPTED."""
    return count_states(study.get_trials(deepcopy=False))


def metric_names(study: optuna.Study) -> list[str]:
    """The objective metric names (``value_<i>`` where the study has none)."""
    names = study.metric_names
    return list(names) if names else [f"value_{i}" for i in range(len(study.directions))]


def best_trials(study: optuna.Study, *, top: int = 1) -> list[FrozenTrial]:
    """The ``top`` best completed trials, or the Pareto front of a multi-objective study."""
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
    return sorted(complete, key=lambda t: (sign * t.value, t.number))[:top]  # type: ignore[operator]


def describe_trial(trial: FrozenTrial, metrics: list[str]) -> dict[str, Any]:
    """A JSON-ready view of one trial."""
    values = trial.values or []
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": {name: _json_float(v) for name, v in zip(metrics, values, strict=False)},
        "params": dict(trial.params),
        "mlflow_run_id": trial.user_attrs.get(TrialAttr.RUN_ID),
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
        "user_attrs": dict(trial.user_attrs),
    }


def study_summary(study: optuna.Study, *, top: int = 1) -> dict[str, Any]:
    """Name, directions, counts, best trials and the parent run of a study."""
    metrics = metric_names(study)
    return {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "metrics": metrics,
        "counts": state_counts(study),
        "best_trials": [describe_trial(t, metrics) for t in best_trials(study, top=top)],
        "parent_run_id": study.user_attrs.get(StudyAttr.PARENT_RUN_ID),
    }


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
