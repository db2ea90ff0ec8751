"""Reading back what a sweep wrote: the Optuna study and the MLflow runs."""

from __future__ import annotations

from pathlib import Path

import optuna
from mlflow import MlflowClient
from mlflow.entities import Run


def load(workspace: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workspace}/optuna.db")


def client(workspace: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workspace}/mlflow.db")


def runs(workspace: Path, name: str) -> tuple[Run, list[Run]]:
    """The parent run and the child runs of experiment ``name``."""
    c = client(workspace)
    experiment = c.get_experiment_by_name(name)
    found = c.search_runs([experiment.experiment_id], max_results=10000)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    return parents[0], children
