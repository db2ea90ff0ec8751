"""The MLflow side of a sweep: the tracker actor that writes runs, and reading runs back.

One parent run per sweep and one nested child run per trial attempt. May import
:mod:`orchestrator.spec` (a parent run's ``spec.yaml``), :mod:`orchestrator.cluster` (the
credentials of an orch cluster's tracking server) and the shared leaf modules; never Optuna.
"""

from typing import TYPE_CHECKING

from orchestrator._lazy import lazy_exports
from orchestrator.tracking._artifacts import ArtifactSpool, log_folder, upload_artifact
from orchestrator.tracking._routes import (
    RunLink,
    compare_route,
    experiment_route,
    run_route,
    short_run_route,
)
from orchestrator.tracking._tracker import (
    RUN_STATUS,
    Tracker,
    close_open_runs,
    close_study_runs,
    ensure_experiment,
    open_children,
)

if TYPE_CHECKING:
    from orchestrator.tracking._runs import (
        child_run_params,
        experiment_id,
        find_trial_run,
        get_run,
        metric_histories,
        parent_spec,
        quiet_downloads,
        running_trial_runs,
    )

__all__ = [
    "RUN_STATUS",
    "ArtifactSpool",
    "RunLink",
    "Tracker",
    "child_run_params",
    "close_open_runs",
    "close_study_runs",
    "compare_route",
    "ensure_experiment",
    "experiment_id",
    "experiment_route",
    "find_trial_run",
    "get_run",
    "log_folder",
    "metric_histories",
    "open_children",
    "parent_spec",
    "quiet_downloads",
    "run_route",
    "running_trial_runs",
    "short_run_route",
    "upload_artifact",
]

#: The readers of runs (those not imported above) come with MLflow on first use: the driver
#: and the study hub import this package for the tracker actor's class only.
__getattr__ = lazy_exports(
    __name__,
    {name: "orchestrator.tracking._runs" for name in __all__ if name not in globals()},
)
