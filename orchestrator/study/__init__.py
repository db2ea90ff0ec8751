"""The Optuna side of a sweep: storage, samplers and pruners, the study, its driver, the hub.

While a sweep runs, the :class:`StudyHub` actor is the only process that opens the storage: it
asks the sampler, records reports, stops trials (``stop_when`` rules, the pruner) and tells
outcomes. May import :mod:`orchestrator.spec`, :mod:`orchestrator.trial` and the shared leaf
modules (errors, names, workspace); never MLflow (the hub sends the tracker actor its writes
through Ray).
"""

from orchestrator.study._driver import GRACE_S, Owner, heartbeat, live_driver
from orchestrator.study._hub import HEARTBEAT_S, StudyHub
from orchestrator.study._samplers import (
    PRUNERS,
    SAMPLERS,
    build_pruner,
    build_sampler,
    grid,
    grid_size,
    suggest,
)
from orchestrator.study._stopping import Stop, StopRules
from orchestrator.study._storage import (
    JOURNAL_PREFIX,
    holds_no_study,
    journal_path,
    open_storage,
    study_exists,
)
from orchestrator.study._study import (
    FINISHED_STATES,
    check_study,
    count_states,
    finished_count,
    is_finished,
    open_study,
    requeue,
    trial_id_of,
)
from orchestrator.study._summary import (
    best_trials,
    describe_trial,
    metric_names,
    state_counts,
    study_summary,
)

__all__ = [
    "FINISHED_STATES",
    "GRACE_S",
    "HEARTBEAT_S",
    "JOURNAL_PREFIX",
    "PRUNERS",
    "SAMPLERS",
    "Owner",
    "Stop",
    "StopRules",
    "StudyHub",
    "best_trials",
    "build_pruner",
    "build_sampler",
    "check_study",
    "count_states",
    "describe_trial",
    "finished_count",
    "grid",
    "grid_size",
    "heartbeat",
    "holds_no_study",
    "is_finished",
    "journal_path",
    "live_driver",
    "metric_names",
    "open_storage",
    "open_study",
    "requeue",
    "state_counts",
    "study_exists",
    "study_summary",
    "suggest",
    "trial_id_of",
]
