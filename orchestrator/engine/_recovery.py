"""Closing what a sweep left open when its study hub died before it could close it itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.errors import one_line, redact

if TYPE_CHECKING:
    from orchestrator.study import Owner

__all__ = ["close_abandoned"]


def close_abandoned(
    *, storage_url: str, tracking_uri: str, study_name: str, owner: Owner, status: str, reason: str
) -> list[str]:
    """Re-queue the study's RUNNING trials (``owner`` was its one driver); close open runs.

    Used by the driver when the study hub (or all of Ray) is gone: it reaches both stores
    directly. Every run of the study still open is closed (found by its study tag, so also
    those of a parent run the hub never got to record): a study has one driver at a time.
    Never raises: returns one line per step that failed (the study first, then MLflow), so a
    store that refuses or is gone is reported, not a traceback.
    """
    # Imported here: Ray workers import this package, and must not pay for Optuna and MLflow.
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    from orchestrator.credentials import apply_mlflow_credentials
    from orchestrator.study import heartbeat, open_storage, requeue
    from orchestrator.tracking import close_study_runs

    try:
        storage = open_storage(storage_url)
        study = optuna.load_study(study_name=study_name, storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            requeue(study, storage, trial, reason)
        heartbeat(study, owner, ended=True)
    except Exception as exc:
        return [f"closing the study's trials failed: {one_line(exc, with_type=True)}"]
    try:
        apply_mlflow_credentials(tracking_uri)
        client = MlflowClient(tracking_uri)
        experiment = client.get_experiment_by_name(study_name)  # named after the study
        if experiment is None:
            return []
        close_study_runs(client, experiment.experiment_id, study_name, status=status, reason=reason)
    except Exception as exc:
        return [
            f"closing the runs in MLflow ({redact(tracking_uri)}) failed: "
            f"{one_line(exc, with_type=True)}; they stay RUNNING until a --resume"
        ]
    return []
