"""Reading a study's results: counts per state, best trials and the Pareto front."""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from orchestrator.errors import StudyError, one_line, redact
from orchestrator.names import StudyAttr, TrialAttr
from orchestrator.results._links import mlflow_ui
from orchestrator.study import count_states, open_storage, study_exists
from orchestrator.tracking import run_links

__all__ = [
    "add_links",
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


def best_summary(
    study: optuna.Study, *, top: int = 1, tracking_uri: str, ui_url: str | None = None
) -> dict[str, Any]:
    """:func:`study_summary` with links into the MLflow UI (``orch best``): see :func:`add_links`.

    ``pareto_front`` says whether ``best_trials`` is the Pareto front of a multi-objective study.
    """
    summary = study_summary(study, top=top)
    summary["pareto_front"] = len(study.directions) > 1
    return add_links(summary, tracking_uri=tracking_uri, ui_url=ui_url)


def add_links(
    summary: dict[str, Any], *, tracking_uri: str, ui_url: str | None = None
) -> dict[str, Any]:
    """Add MLflow UI links to a :func:`study_summary` (in place); return it.

    ``ui_url`` is the UI's address (default: the tracking server's, else ``orch ui``'s). Adds
    ``tracking_uri``, ``ui_url`` and ``ui_served_by`` (see :class:`MlflowUi`), ``compare_url``
    (MLflow's compare-runs page of the best trials' runs; None without runs), each best
    trial's ``mlflow_run`` (its :class:`RunLink` and ``ui_url``, its run page; None without a
    run), and ``problems`` (why links are missing when MLflow could not be read).
    """
    ui = mlflow_ui(tracking_uri, ui_url)
    summary["tracking_uri"] = redact(tracking_uri)
    summary["ui_url"] = ui.url
    summary["ui_served_by"] = ui.served_by
    summary["problems"] = []
    try:
        links = run_links(
            tracking_uri=tracking_uri,
            experiment=summary["study"],
            run_ids=[t["mlflow_run_id"] for t in summary["best_trials"]],
        )
    except Exception as exc:
        links = {}
        summary["problems"].append(f"MLflow links unavailable: {one_line(exc, limit=200)}")
    shown = []
    for trial in summary["best_trials"]:
        link = links.get(trial["mlflow_run_id"] or "")
        trial["mlflow_run"] = {**link.to_dict(), "ui_url": ui.run(link.run_id)} if link else None
        if link:
            shown.append(link)
    experiments = list(dict.fromkeys(link.experiment_id for link in shown))
    summary["compare_url"] = (
        ui.compare(experiments, [link.run_id for link in shown]) if shown else None
    )
    return summary


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
