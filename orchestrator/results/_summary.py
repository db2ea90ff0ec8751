"""Reading a study's results: counts per state, best trials and the Pareto front."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage

from orchestrator.errors import StudyError, one_line
from orchestrator.study import (
    best_trials,
    describe_trial,
    metric_names,
    open_storage,
    state_counts,
    study_exists,
    study_summary,
)
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


def best_summary(study: optuna.Study, *, top: int = 1, tracking_uri: str) -> dict[str, Any]:
    """:func:`study_summary` with each best trial's MLflow run link (``orch best``).

    ``pareto_front`` says whether ``best_trials`` is the Pareto front of a multi-objective
    study; ``problems`` says why links are missing when MLflow could not be read.
    """
    summary = study_summary(study, top=top)
    summary["tracking_uri"] = tracking_uri
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
