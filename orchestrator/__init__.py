"""orch: hyperparameter sweeps of deep equilibrium models on Optuna, Ray and MLflow."""

from __future__ import annotations

from orchestrator.errors import ClusterError, OrchError, RunError, SpecError, StudyError
from orchestrator.trial import LocalSink, Trial, TrialDiverged, TrialPruned, local_trial

__version__ = "0.1.0"

__all__ = [
    "ClusterError",
    "LocalSink",
    "OrchError",
    "RunError",
    "SpecError",
    "StudyError",
    "Trial",
    "TrialDiverged",
    "TrialPruned",
    "__version__",
    "local_trial",
]
