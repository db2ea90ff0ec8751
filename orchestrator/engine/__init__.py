"""Running a sweep's trials on Ray: the session, the hub and tracker actors, the trial loop,
the task each attempt runs in, and the recovery of what a lost hub left open.

Every Ray worker imports this package to run :func:`run_attempt`: at module level it imports
Ray and :mod:`orchestrator.trial` only; Optuna and MLflow are imported inside the functions that
start or replace the hub and tracker. May import every stage below it (spec, trial, study,
tracking) and the cluster credentials of a tracking server.
"""

from orchestrator.engine._actors import start_actors
from orchestrator.engine._loop import (
    SYSTEM_FAILURES,
    Listener,
    LoopResult,
    TrialLoop,
    cluster_capacity,
)
from orchestrator.engine._lost import LOST_AFTER_S, PROBE_GROUP, RayLost, lost_reason
from orchestrator.engine._recovery import close_abandoned
from orchestrator.engine._session import ray_output_to, ray_session, stderr_on_own_descriptor
from orchestrator.engine._worker import HubSink, OutputLog, run_attempt

__all__ = [
    "LOST_AFTER_S",
    "PROBE_GROUP",
    "SYSTEM_FAILURES",
    "HubSink",
    "Listener",
    "LoopResult",
    "OutputLog",
    "RayLost",
    "TrialLoop",
    "close_abandoned",
    "cluster_capacity",
    "lost_reason",
    "ray_output_to",
    "ray_session",
    "run_attempt",
    "start_actors",
    "stderr_on_own_descriptor",
]
