"""Where studies stand: trials per state, best values, running trials with their node and GPU, ETA.

Optuna holds the states and times; the node and GPU of a running trial come from its MLflow
run's tags (set when the attempt starts), and the target trial count and parallelism from the
``spec.yaml`` artifact of the sweep's parent run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import optuna
from mlflow import MlflowClient
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from orchestrator.errors import one_line
from orchestrator.names import Tag, TrialAttr
from orchestrator.results._summary import load_study, study_summary
from orchestrator.spec import Spec
from orchestrator.study import finished_count, grid_size, is_finished, live_driver, open_storage
from orchestrator.tracking import experiment_id, parent_spec, running_trial_runs

__all__ = ["RunningTrial", "StatusReader", "StudyStatus"]

#: How long a parent run's spec is reused before it is read again (a resume may change it).
_SPEC_TTL_S = 30.0


@dataclass
class RunningTrial:
    """A trial in flight: how long it has run and where."""

    number: int
    attempt: int | None
    elapsed_s: float | None
    node: str | None
    hostname: str | None
    gpu_ids: str | None
    mlflow_run_id: str | None


@dataclass
class StudyStatus:
    """One study as ``orch status`` shows it."""

    study: str
    state: str
    directions: list[str]
    metrics: list[str]
    counts: dict[str, int]
    best_trials: list[dict[str, Any]]
    parent_run_id: str | None
    finished: int
    target: int | None = None
    parallel: int | None = None
    mean_duration_s: float | None = None
    eta_s: float | None = None
    running: list[RunningTrial] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what ``orch status --json`` prints per study)."""
        data = asdict(self)
        for trial in data["best_trials"]:
            trial.pop("user_attrs", None)
        return data


class StatusReader:
    """Reads the status of studies; keep one around to refresh cheaply (``--watch``)."""

    def __init__(self, *, storage_url: str, tracking_uri: str) -> None:
        self.storage_url = storage_url
        self.tracking_uri = tracking_uri
        self._storage: BaseStorage | None = None
        self._mlflow: MlflowClient | None = None
        self._specs: dict[str, tuple[float, Spec | None]] = {}

    @property
    def _client(self) -> MlflowClient:
        """The MLflow client, made on first use (it creates a missing sqlite store)."""
        if self._mlflow is None:
            self._mlflow = MlflowClient(self.tracking_uri)
        return self._mlflow

    def read(self, study: str | None = None) -> list[StudyStatus]:
        """The status of ``study``, or of every study in the storage (sorted by name)."""
        if self._storage is None:  # opened on first use: a reader never creates the storage
            self._storage = open_storage(self.storage_url, read_only=True)
        if study is not None:
            names = [study]
        else:
            names = sorted(s.study_name for s in self._storage.get_all_studies())
        return [
            self.study_status(load_study(self._storage, n, storage_url=self.storage_url))
            for n in names
        ]

    def study_status(self, study: optuna.Study) -> StudyStatus:
        """The status of one loaded study."""
        summary = study_summary(study, top=1)
        trials = study.get_trials(deepcopy=False)
        status = StudyStatus(
            study=study.study_name,
            state="",
            directions=summary["directions"],
            metrics=summary["metrics"],
            counts=summary["counts"],
            best_trials=summary["best_trials"],
            parent_run_id=summary["parent_run_id"],
            finished=finished_count(trials),
            mean_duration_s=_mean_duration(trials),
        )
        spec = self._spec(status)
        if spec is not None:
            status.target = min(spec.trials, grid_size(spec) or spec.trials)
            status.parallel = spec.parallel
        status.running = self._running(study, trials, status)
        status.state = _state(study, status)
        status.eta_s = _eta(status)
        return status

    def _spec(self, status: StudyStatus) -> Spec | None:
        parent = status.parent_run_id
        if parent is None:
            return None
        cached = self._specs.get(parent)
        if cached is not None and time.monotonic() - cached[0] < _SPEC_TTL_S:
            return cached[1]
        try:
            spec: Spec | None = parent_spec(self._client, parent)
        except Exception as exc:
            status.problems.append(f"no target trial count: {one_line(exc, limit=200)}")
            spec = None
        self._specs[parent] = (time.monotonic(), spec)
        return spec

    def _running(
        self, study: optuna.Study, trials: list[optuna.trial.FrozenTrial], status: StudyStatus
    ) -> list[RunningTrial]:
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if not running:
            return []
        tags: dict[int, dict[str, str]] = {}
        if status.parent_run_id:
            try:
                experiment = experiment_id(self._client, study.study_name)
                if experiment is not None:
                    tags = running_trial_runs(self._client, experiment, status.parent_run_id)
            except Exception as exc:
                status.problems.append(
                    f"MLflow unreachable for node/GPU: {one_line(exc, limit=200)}"
                )
        now = datetime.now()
        found = []
        for trial in running:
            run = tags.get(trial.number, {})
            attempt = run.get(Tag.ATTEMPT)
            found.append(
                RunningTrial(
                    number=trial.number,
                    attempt=int(attempt) if attempt and attempt.isdigit() else None,
                    elapsed_s=(now - trial.datetime_start).total_seconds()
                    if trial.datetime_start
                    else None,
                    node=run.get(Tag.NODE_IP),
                    hostname=run.get(Tag.HOSTNAME),
                    gpu_ids=run.get(Tag.GPU_IDS),
                    mlflow_run_id=run.get("run_id") or trial.user_attrs.get(TrialAttr.RUN_ID),
                )
            )
        return found


def _mean_duration(trials: list[optuna.trial.FrozenTrial]) -> float | None:
    """Mean wall time of finished trials."""
    durations = [
        t.duration.total_seconds() for t in trials if is_finished(t) and t.duration is not None
    ]
    return sum(durations) / len(durations) if durations else None


def _state(study: optuna.Study, status: StudyStatus) -> str:
    """running (a live driver), done (target reached), or stopped (resume to go on)."""
    if live_driver(study) is not None:
        return "running"
    if status.target is None:
        return "stopped" if status.running else "done"
    return "done" if status.finished >= status.target else "stopped"


def _eta(status: StudyStatus) -> float | None:
    """Seconds to the target: the work left at the mean trial time, shared by the slots."""
    if status.state != "running" or status.target is None or status.mean_duration_s is None:
        return None
    mean = status.mean_duration_s
    remaining = max(status.target - status.finished, 0)
    if remaining == 0:
        return 0.0
    slots = status.parallel or max(len(status.running), 1)
    done_of_running = sum(min(t.elapsed_s or 0.0, mean) for t in status.running)
    return max(remaining * mean - done_of_running, 0.0) / slots
