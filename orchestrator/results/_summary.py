"""Reading a study's results: counts per state, best trials and the Pareto front."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage

from orchestrator.errors import StudyError, one_line, redact
from orchestrator.results._links import mlflow_ui
from orchestrator.study import (
    best_trials,
    describe_trial,
    metric_names,
    open_storage,
    state_counts,
    study_exists,
    study_summary,
)
from orchestrator.tracking import RunLink

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


def best_summary(
    study: optuna.Study,
    *,
    top: int = 1,
    tracking_uri: str,
    ui_url: str | None = None,
    experiment_id: str | None = None,
) -> dict[str, Any]:
    """:func:`study_summary` with links into the MLflow UI (``orch best``): see :func:`add_links`.

    ``pareto_front`` says whether ``best_trials`` is the Pareto front of a multi-objective study.
    """
    summary = study_summary(study, top=top)
    summary["pareto_front"] = len(study.directions) > 1
    return add_links(summary, tracking_uri=tracking_uri, ui_url=ui_url, experiment_id=experiment_id)


def add_links(
    summary: dict[str, Any],
    *,
    tracking_uri: str,
    ui_url: str | None = None,
    experiment_id: str | None = None,
) -> dict[str, Any]:
    """Add MLflow UI links to a :func:`study_summary` (in place); return it.

    ``ui_url`` is the UI's address (default: the tracking server's, else ``orch ui``'s). Adds
    ``tracking_uri``, ``ui_url`` and ``ui_served_by`` (see :class:`MlflowUi`), ``compare_url``
    (MLflow's compare-runs page of the best trials' runs; None without runs), each best
    trial's ``mlflow_run`` (its :class:`RunLink` and ``ui_url``, its run page; None without a
    run), and ``problems`` (why links are missing when MLflow could not be read).
    ``experiment_id``: the study's MLflow experiment when known (a sweep that just ran it);
    otherwise it is looked up in the tracking store.
    """
    ui = mlflow_ui(tracking_uri, ui_url)
    summary["tracking_uri"] = redact(tracking_uri)
    summary["ui_url"] = ui.url
    summary["ui_served_by"] = ui.served_by
    summary["problems"] = []
    if experiment_id is None:  # not given: read from the tracking store (imports MLflow)
        from mlflow import MlflowClient

        from orchestrator.tracking import experiment_id as find_experiment

        try:
            experiment_id = find_experiment(MlflowClient(tracking_uri), summary["study"])
        except Exception as exc:
            summary["problems"].append(f"MLflow links unavailable: {one_line(exc, limit=200)}")
    shown = []
    for trial in summary["best_trials"]:
        run_id = trial["mlflow_run_id"]
        link = (
            RunLink(tracking_uri, experiment_id, run_id)
            if run_id and experiment_id is not None
            else None
        )
        trial["mlflow_run"] = {**link.to_dict(), "ui_url": ui.run(link.run_id)} if link else None
        if link:
            shown.append(link)
    experiments = list(dict.fromkeys(link.experiment_id for link in shown))
    summary["compare_url"] = (
        ui.compare(experiments, [link.run_id for link in shown]) if shown else None
    )
    return summary
