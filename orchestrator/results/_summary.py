"""Reading a study's results: counts per state, best trials and the Pareto front."""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from orchestrator.errors import StudyError, one_line, redact
from orchestrator.names import StudyAttr, TrialAttr
from orchestrator.study import count_states, open_storage, study_exists
from orchestrator.tracking import run_links

__all__ = [
    "best_summary",
    "best_trials",
    "describe_trial",
    "load_study",
    "metric_names",
    "read_study",
    "state_counts",
    "study_summary",
]


def load_study(storage: BaseStorage, name: str, *, storage_url: str) -> optuna.Study:
    """Load study ``name``; say which studies exist when it does not.

    Raises:
        StudyError: ``storage`` holds no study ``name``.
    """
    if not study_exists(storage, name):
        names = sorted(s.study_name for s in storage.get_all_studies())
        known = ", ".join(names) if names else "none"
        raise StudyError(f"no study {name!r} in {storage_url} (studies there: {known})")
    return optuna.load_study(study_name=name, storage=storage)


def read_study(storage_url: str, name: str) -> optuna.Study:
    """Load study ``name`` from ``storage_url`` to read it (never creating the storage).

    Raises:
        StudyError: the storage or the study does not exist (naming the studies there).
    """
    try:
        storage = open_storage(storage_url, read_only=True)
    except StudyError as exc:
        raise StudyError(f"no study {name!r}: {exc}") from None
    return load_study(storage, name, storage_url=storage_url)


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


def best_summary(study: optuna.Study, *, top: int = 1, tracking_uri: str) -> dict[str, Any]:
    """:func:`study_summary` with each best trial's MLflow run link (``orch best``).

    ``pareto_front`` says whether ``best_trials`` is the Pareto front of a multi-objective
    study; ``problems`` says why links are missing when MLflow could not be read.
    """
    summary = study_summary(study, top=top)
    summary["tracking_uri"] = redact(tracking_uri)
    summary["pareto_front"] = len(study.directions) > 1
    summary["problems"] = []
    try:
        links = run_links(
            tracking_uri=tracking_uri,
            experiment=study.study_name,
            run_ids=[t["mlflow_run_id"] for t in summary["best_trials"]],
        )
    except Exception as exc:
        links = {}
        summary["problems"].append(f"MLflow links unavailable: {one_line(exc, limit=200)}")
    for trial in summary["best_trials"]:
        link = links.get(trial["mlflow_run_id"] or "")
        trial["mlflow_run"] = link.to_dict() if link else None
    return summary


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
