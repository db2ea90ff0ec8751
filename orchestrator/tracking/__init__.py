"""The MLflow side of a sweep: the tracker actor that writes runs, and reading runs back.

One parent run per sweep and one nested child run per trial attempt. May import
:mod:`orchestrator.spec` (a parent run's ``spec.yaml``), :mod:`orchestrator.cluster` (the
credentials of an orch cluster's tracking server) and the shared leaf modules; never Optuna.
"""

from orchestrator.tracking._artifacts import ArtifactSpool, upload_artifact
from orchestrator.tracking._runs import (
    RunLink,
    experiment_id,
    find_trial_run,
    get_run,
    metric_histories,
    parent_spec,
    quiet_downloads,
    run_links,
    running_trial_runs,
)
from orchestrator.tracking._tracker import (
    RUN_STATUS,
    Tracker,
    close_open_runs,
    ensure_experiment,
    open_children,
)

__all__ = [
    "RUN_STATUS",
    "ArtifactSpool",
    "RunLink",
    "Tracker",
    "close_open_runs",
    "ensure_experiment",
    "experiment_id",
    "find_trial_run",
    "get_run",
    "metric_histories",
    "open_children",
    "parent_spec",
    "quiet_downloads",
    "run_links",
    "running_trial_runs",
    "upload_artifact",
]
