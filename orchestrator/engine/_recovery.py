"""Closing what a sweep left open when its study hub died before it could close it itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.errors import one_line, redact
from orchestrator.names import StudyAttr

if TYPE_CHECKING:
    from orchestrator.study import Owner

__all__ = ["close_abandoned"]


def close_abandoned(
    *, storage_url: str, tracking_uri: str, study_name: str, owner: Owner, status: str, reason: str
) -> list[str]:
    """Re-queue the study's RUNNING trials (``owner`` was its one driver); close open runs.

    Never raises: returns one line per step that failed (the study first, then MLflow), so a
    store that refuses or is gone is reported, not a traceback.
    """
    # Imported here: Ray workers import this package, and must not pay for Optuna and MLflow.
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    from orchestrator.study import heartbeat, open_storage, requeue
    from orchestrator.tracking import close_open_runs, open_children

    try:
        storage = open_storage(storage_url)
        study = optuna.load_study(study_name=study_name, storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            requeue(study, storage, trial, reason)
        heartbeat(study, owner, ended=True)
        parent = study.user_attrs.get(StudyAttr.PARENT_RUN_ID)
    except Exception as exc:
        return [f"closing the study's trials failed: {one_line(exc, with_type=True)}"]
    if parent is None:
        return []
    try:
        client = MlflowClient(tracking_uri)
        experiment_id = client.get_run(parent).info.experiment_id
        close_open_runs(client, open_children(client, experiment_id, parent), reason=reason)
        close_open_runs(client, [parent], status=status, reason=reason)
    except Exception as exc:
        return [
            f"closing the runs in MLflow ({redact(tracking_uri)}) failed: "
            f"{one_line(exc, with_type=True)}; they stay RUNNING until a --resume"
        ]
    return []
