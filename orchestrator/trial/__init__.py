"""One trial, as a job sees it and as a worker runs it; free of Ray, Optuna, MLflow and pydantic.

Owns the :class:`Trial` a job receives, finding and importing a spec's ``module:function`` job,
calling it, and the :class:`Outcome` of one attempt. May import :mod:`orchestrator.errors` only.
"""

from orchestrator.trial._api import (
    LocalSink,
    Trial,
    TrialDiverged,
    TrialPruned,
    TrialSink,
    local_trial,
)
from orchestrator.trial._attempt import Outcome, Ticket, call_job, from_result
from orchestrator.trial._jobref import JobFn, load_job, project_root

__all__ = [
    "JobFn",
    "LocalSink",
    "Outcome",
    "Ticket",
    "Trial",
    "TrialDiverged",
    "TrialPruned",
    "TrialSink",
    "call_job",
    "from_result",
    "load_job",
    "local_trial",
    "project_root",
]
