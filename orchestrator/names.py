"""Every name orch writes into Optuna and MLflow: trial and study attributes, run tags.

Users' scripts, ``orch export`` columns and the MLflow UI rely on these names: they are a
contract. Add freely; never rename one.
"""

from __future__ import annotations

from typing import Final

__all__ = ["JobMeta", "RunName", "StudyAttr", "Tag", "TrialAttr"]


class TrialAttr:
    """User attributes of an Optuna trial."""

    RUN_ID: Final = "mlflow_run_id"
    FAIL_REASON: Final = "fail_reason"
    DIVERGED: Final = "diverged"
    #: The ``stop_when`` rule that ended the trial PRUNED: ``stop_when[i]: <rule in words>``.
    STOP_RULE: Final = "orch.stop_rule"
    INTERRUPTED: Final = "orch.interrupted"
    RERUN_OF: Final = "orch.rerun_of"
    ATTEMPTS: Final = "orch.attempts"
    DURATION_S: Final = "orch.duration_s"
    NODE_IP: Final = "orch.node_ip"
    GPU_IDS: Final = "orch.gpu_ids"


class StudyAttr:
    """User attributes of an Optuna study."""

    PARENT_RUN_ID: Final = "mlflow_parent_run_id"
    #: ``orch.driver.<id>``: one record per orch process that ran the study (heartbeats).
    DRIVER_PREFIX: Final = "orch.driver."


class Tag:
    """MLflow run tags: of a trial's run, of the sweep's parent run, and MLflow's own."""

    # MLflow's own.
    PARENT_RUN_ID: Final = "mlflow.parentRunId"
    #: The run's name (what MLflow's runs list shows; see :class:`RunName`).
    RUN_NAME: Final = "mlflow.runName"
    NOTE: Final = "mlflow.note.content"
    SOURCE_GIT_COMMIT: Final = "mlflow.source.git.commit"
    # A trial's run.
    STUDY_NAME: Final = "optuna.study_name"
    TRIAL_NUMBER: Final = "optuna.trial_number"
    STATE: Final = "optuna.state"
    ATTEMPT: Final = "orch.attempt"
    OWNER: Final = "orch.owner"
    FAIL_REASON: Final = "orch.fail_reason"
    DIVERGED: Final = "orch.diverged"
    #: As the trial attribute ``orch.stop_rule``.
    STOP_RULE: Final = "orch.stop_rule"
    #: Which tracker created the run, and for what: ``<tracker id>/<trial>.<attempt>`` or
    #: ``<tracker id>/parent`` (finds a run whose creation reply a database outage lost).
    RUN_KEY: Final = "orch.run_key"
    #: Where the attempt ran: ``orch.node_id``, ``orch.node_ip``, ``orch.hostname``,
    #: ``orch.gpu_ids`` (``PLACEMENT_PREFIX`` + the key).
    PLACEMENT_PREFIX: Final = "orch."
    NODE_IP: Final = "orch.node_ip"
    HOSTNAME: Final = "orch.hostname"
    GPU_IDS: Final = "orch.gpu_ids"
    # The sweep's parent run.
    STUDY: Final = "orch.study"
    JOB: Final = "orch.job"
    OVERRIDES: Final = "orch.overrides"
    BEST_TRIAL: Final = "orch.best_trial"
    BEST_RUN_ID: Final = "orch.best_run_id"
    #: Why the end-of-sweep report could not be logged (built after the sweep, in the
    #: background); absent when it was.
    REPORT_ERROR: Final = "orch.report_error"
    # Provenance of the parent run (and of a replay).
    PYTHON: Final = "orch.python"
    VERSION: Final = "orch.version"
    #: ``orch.<package>_version`` for ray, optuna, mlflow and torch.
    PACKAGE_VERSION: Final = "orch.{package}_version"
    PROJECT: Final = "orch.project"
    GIT_COMMIT: Final = "orch.git_commit"
    GIT_DIRTY: Final = "orch.git_dirty"
    SUBMITTED_FROM: Final = "orch.submitted_from"
    SUBMITTED_PYTHON: Final = "orch.submitted_python"
    # A replay's run.
    REPLAY_OF: Final = "orch.replay_of"
    REPLAY_OF_PARENT: Final = "orch.replay_of_parent"


class RunName:
    """How a trial attempt's MLflow run is named: ``#7 solver=anderson memory=5 tol=3.2e-04``.

    ``#<trial number>``, ``retry <attempt>`` for a retried attempt, then the trial's sampled
    params in the space's order, cut after ``MAX_CHARS`` with ``…``. An attempt that ends other
    than COMPLETE gets its mark after the number when its run is closed
    (``#7 [pruned] solver=…``), so the runs list tells it apart without opening it.
    """

    MAX_CHARS: Final = 64
    RETRY: Final = "retry"
    PRUNED: Final = "[pruned]"
    DIVERGED: Final = "[diverged]"
    FAILED: Final = "[failed]"
    INTERRUPTED: Final = "[interrupted]"


class JobMeta:
    """Metadata of the Ray jobs ``orch submit`` starts (what ``orch jobs`` lists)."""

    KIND: Final = "orch.kind"
    STUDY: Final = "orch.study"
    SPEC: Final = "orch.spec"
