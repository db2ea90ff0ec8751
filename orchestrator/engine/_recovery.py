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

    Used by the driver when the study hub (or all of Ray) is gone: it reaches both stores
    directly. When the hub never got to record the parent run, every run still open in the
    study's experiment is closed: a study has one driver at a time, so they were this one's.
    Never raises: returns one line per step that failed (the study first, then MLflow), so a
    store that refuses or is gone is reported, not a traceback.
    """
    # Imported here: Ray workers import this package, and must not pay for Optuna and MLflow.
    import optuna
    from mlflow import MlflowClient
    from mlflow.entities import ViewType
    from optuna.trial import TrialState

    from orchestrator.credentials import apply_mlflow_credentials
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
    try:
        apply_mlflow_credentials(tracking_uri)
        client = MlflowClient(tracking_uri)
        if parent is None:
            experiment = client.get_experiment_by_name(study_name)
            if experiment is not None:
                open_runs = client.search_runs(
                    [experiment.experiment_id],
                    filter_string="attributes.status = 'RUNNING'",
                    run_view_type=ViewType.ACTIVE_ONLY,
                    max_results=50000,
                )
                close_open_runs(client, [r.info.run_id for r in open_runs], reason=reason)
            return []
        experiment_id = client.get_run(parent).info.experiment_id
        close_open_runs(client, open_children(client, experiment_id, parent), reason=reason)
        close_open_runs(client, [parent], status=status, reason=reason)
    except Exception as exc:
        return [
            f"closing the runs in MLflow ({redact(tracking_uri)}) failed: "
            f"{one_line(exc, with_type=True)}; they stay RUNNING until a --resume"
        ]
    return []
