"""orch: hyperparameter sweeps of deep equilibrium models on Optuna, Ray and MLflow.

The public API, for notebooks and scripts::

    from orchestrator import sweep, read_study, best_summary
    result = sweep("search_spaces/quadratic.yaml", trials=8)

A package per stage of a sweep, each importing only those before it: :mod:`~orchestrator.spec`
(the YAML file) → :mod:`~orchestrator.trial` (what a job sees) → :mod:`~orchestrator.study`
(Optuna) and :mod:`~orchestrator.tracking` (MLflow) → :mod:`~orchestrator.engine` (Ray) →
:func:`sweep`; :mod:`~orchestrator.results` reads sweeps back, :mod:`~orchestrator.cluster`
runs them remotely, :mod:`~orchestrator.cli` is the ``orch`` command. The names below that need
Optuna, Ray or MLflow (and the rest) are imported on first use, so ``import orchestrator`` stays
light (jobs, Ray workers and ``orch --help`` import it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator._lazy import lazy_exports
from orchestrator.errors import (
    ClusterError,
    OrchError,
    RunError,
    SpecError,
    StoreUnavailable,
    StudyError,
)

if TYPE_CHECKING:
    from orchestrator._sweep import SweepInterrupted, SweepLost, SweepResult, sweep
    from orchestrator.results import (
        StatusReader,
        best_summary,
        compare_runs,
        export_study,
        read_study,
        replay,
        study_summary,
    )
    from orchestrator.spec import Spec, load_spec
    from orchestrator.trial import LocalSink, Trial, TrialDiverged, TrialPruned, local_trial

__version__ = "0.1.0"

#: Public names imported on first use, and the module each comes from.
_LAZY = {
    "sweep": "orchestrator._sweep",
    "SweepInterrupted": "orchestrator._sweep",
    "SweepLost": "orchestrator._sweep",
    "SweepResult": "orchestrator._sweep",
    "Spec": "orchestrator.spec",
    "load_spec": "orchestrator.spec",
    "LocalSink": "orchestrator.trial",
    "Trial": "orchestrator.trial",
    "TrialDiverged": "orchestrator.trial",
    "TrialPruned": "orchestrator.trial",
    "local_trial": "orchestrator.trial",
    "StatusReader": "orchestrator.results",
    "best_summary": "orchestrator.results",
    "compare_runs": "orchestrator.results",
    "export_study": "orchestrator.results",
    "read_study": "orchestrator.results",
    "replay": "orchestrator.results",
    "study_summary": "orchestrator.results",
}

__all__ = [
    "ClusterError",
    "LocalSink",
    "OrchError",
    "RunError",
    "Spec",
    "SpecError",
    "StatusReader",
    "StoreUnavailable",
    "StudyError",
    "SweepInterrupted",
    "SweepLost",
    "SweepResult",
    "Trial",
    "TrialDiverged",
    "TrialPruned",
    "__version__",
    "best_summary",
    "compare_runs",
    "export_study",
    "load_spec",
    "local_trial",
    "read_study",
    "replay",
    "study_summary",
    "sweep",
]


__getattr__ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
