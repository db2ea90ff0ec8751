"""Reading back what a sweep wrote: the Optuna study and the MLflow runs.

The ``*_so_far`` readers are for polling a sweep that may not have created its stores yet:
they return None until it has, and let every other error through.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.storages import RDBStorage


def load(workspace: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workspace}/optuna.db")


def client(workspace: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workspace}/mlflow.db")


def runs(workspace: Path, name: str) -> tuple[Run, list[Run]]:
    """The parent run and the child runs of experiment ``name``."""
    found = runs_so_far(workspace, name)
    assert found is not None, f"no experiment {name!r} in {workspace}"
    parent, children = found
    assert parent is not None, f"no parent run in experiment {name!r}"
    return parent, children


def study_so_far(workspace: Path, name: str) -> optuna.Study | None:
    """Study ``name`` once the sweep has created it (None before), never creating anything."""
    if not (workspace / "optuna.db").exists():
        return None
    storage = RDBStorage(f"sqlite:///{workspace}/optuna.db", skip_table_creation=True)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # the storage exists, the study not yet
        return None


def runs_so_far(workspace: Path, name: str) -> tuple[Run | None, list[Run]] | None:
    """The parent run (None before it exists) and the child runs of experiment ``name``;
    None before the experiment exists."""
    if not (workspace / "mlflow.db").exists():
        return None
    c = client(workspace)
    experiment = c.get_experiment_by_name(name)
    if experiment is None:
        return None
    found = c.search_runs([experiment.experiment_id], max_results=10000)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) <= 1, [r.info.run_name for r in parents]
    return (parents[0] if parents else None), children
