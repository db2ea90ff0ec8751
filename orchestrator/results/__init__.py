"""Reading sweeps back: status, best trials, export, comparison, replay, reports and web UIs.

Every reader opens the study storage read-only and never creates a store. May import every
stage below it (spec, trial, study, tracking) and the shared leaf modules.
"""

from typing import TYPE_CHECKING

from orchestrator._lazy import lazy_exports
from orchestrator.results._links import MlflowUi, experiment_urls, mlflow_ui
from orchestrator.results._summary import (
    add_links,
    best_summary,
    best_trials,
    describe_trial,
    load_study,
    metric_names,
    read_study,
    state_counts,
    study_summary,
)
from orchestrator.results._ui import (
    DEFAULT_UI_PORT,
    UiServer,
    is_server,
    start_mlflow_ui,
    start_optuna_dashboard,
)

if TYPE_CHECKING:
    from orchestrator.results._compare import Compared, Comparison, compare_runs, plot_curves
    from orchestrator.results._export import (
        export_study,
        fixed_params,
        intermediate_table,
        trials_table,
    )
    from orchestrator.results._replay import (
        CodeMismatch,
        ReplayResult,
        recover_params,
        replay,
    )
    from orchestrator.results._report import REPORT_ARTIFACT_PATH, build_report, log_report
    from orchestrator.results._status import RunningTrial, StatusReader, StudyStatus

__all__ = [
    "DEFAULT_UI_PORT",
    "REPORT_ARTIFACT_PATH",
    "CodeMismatch",
    "Compared",
    "Comparison",
    "MlflowUi",
    "ReplayResult",
    "RunningTrial",
    "StatusReader",
    "StudyStatus",
    "UiServer",
    "add_links",
    "best_summary",
    "best_trials",
    "build_report",
    "compare_runs",
    "describe_trial",
    "experiment_urls",
    "export_study",
    "fixed_params",
    "intermediate_table",
    "is_server",
    "load_study",
    "log_report",
    "metric_names",
    "mlflow_ui",
    "plot_curves",
    "read_study",
    "recover_params",
    "replay",
    "start_mlflow_ui",
    "start_optuna_dashboard",
    "state_counts",
    "study_summary",
    "trials_table",
]

#: What reads MLflow runs, plots or writes files comes with MLflow, matplotlib or pyarrow on
#: first use: ``orch sweep`` imports this package to print its summary and links only.
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ["Compared", "Comparison", "compare_runs", "plot_curves"],
            "orchestrator.results._compare",
        ),
        **dict.fromkeys(
            ["export_study", "fixed_params", "intermediate_table", "trials_table"],
            "orchestrator.results._export",
        ),
        **dict.fromkeys(
            ["CodeMismatch", "ReplayResult", "recover_params", "replay"],
            "orchestrator.results._replay",
        ),
        **dict.fromkeys(
            ["REPORT_ARTIFACT_PATH", "build_report", "log_report"], "orchestrator.results._report"
        ),
        **dict.fromkeys(
            ["RunningTrial", "StatusReader", "StudyStatus"], "orchestrator.results._status"
        ),
    },
)
