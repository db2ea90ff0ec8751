"""The study hub: the one owner of a sweep's study while it runs.

It asks the sampler for trials, records every report (Optuna intermediate values, MLflow metrics),
decides pruning, and tells outcomes. Trials on any node reach it through Ray, so the storage is
only ever opened on the driver's machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from optuna.trial import TrialState

from orchestrator.attempts import Outcome, Ticket
from orchestrator.samplers import build_pruner
from orchestrator.space import suggest
from orchestrator.spec import Spec
from orchestrator.sqlite_tuning import tune_sqlite
from orchestrator.stopwatch import Stopwatch, timed
from orchestrator.study import (
    INTERRUPTED_ATTR,
    PARENT_RUN_ATTR,
    REASON_ATTR,
    RUN_ID_ATTR,
    Owner,
    finished_count,
    heartbeat,
    open_storage,
    open_study,
    requeue,
)

__all__ = ["HEARTBEAT_S", "StudyHub", "TrackerPort"]

#: How often the hub records that its driver is alive.
HEARTBEAT_S = 10.0


class TrackerPort(Protocol):
    """The tracker as the hub calls it: writes return at once, except where noted."""

    def start_parent(
        self, *, name: str, spec_yaml: str, tags: Mapping[str, str], resume_run_id: str | None
    ) -> str:
        """Open the parent run and wait for its id."""
        ...

    def close_open_children(self, reason: str) -> None: ...

    def start_trial(
        self, key: str, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> Callable[[], str]:
        """Open a child run; the returned function gives its id when first needed."""
        ...

    def log_metrics(
        self, key: str, step: int, metrics: Mapping[str, float], timestamp_ms: int
    ) -> None: ...

    def set_tags(self, key: str, tags: Mapping[str, str]) -> None: ...

    def log_artifact(self, key: str, name: str, data: bytes) -> None: ...

    def end_trial(
        self,
        key: str,
        *,
        state: str,
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        status: str | None = None,
    ) -> None: ...

    def end_parent(
        self, *, status: str, metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> list[str]:
        """Close the parent run and wait; return the errors the tracker met."""
        ...


class StudyHub:
    """Owns the study during a sweep (see the module docstring)."""

    def __init__(
        self,
        *,
        spec: Spec,
        spec_yaml: str,
        storage_url: str,
        tracker: TrackerPort,
        owner: Owner,
        resume: bool,
        parent_tags: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.owner = owner
        self.stopwatch = Stopwatch()
        tune_sqlite()
        self.storage = open_storage(storage_url)
        self.study = open_study(spec, self.storage, resume=resume, storage_url=storage_url)
        self.pruner = build_pruner(spec)
        self.metric = spec.objectives[0].metric if len(spec.objectives) == 1 else None
        self._study_id = self.storage.get_study_id_from_name(spec.name)
        self._tracker = tracker
        self._run_ids: dict[str, Callable[[], str]] = {}
        self._last_beat = 0.0
        stale = self._recover() if resume else []
        self.parent_run_id = tracker.start_parent(
            name=spec.name,
            spec_yaml=spec_yaml,
            tags={
                "orch.study": spec.name,
                "orch.job": spec.job,
                **(parent_tags or {}),
                **({"mlflow.note.content": spec.description} if spec.description else {}),
                **spec.tags,
            },
            resume_run_id=self.study.user_attrs.get(PARENT_RUN_ATTR),
        )
        self.study.set_user_attr(PARENT_RUN_ATTR, self.parent_run_id)
        if stale:
            tracker.close_open_children("interrupted: the orch driver running it stopped")
        self.ping()

    # Progress ---------------------------------------------------------------------------------

    def ping(self) -> None:
        """Record the driver as alive (at most every HEARTBEAT_S seconds)."""
        now = time.time()
        if now - self._last_beat >= HEARTBEAT_S:
            heartbeat(self.study, self.owner)
            self._last_beat = now

    def stats(self) -> dict[str, dict[str, float]]:
        """Seconds and calls per hub activity so far."""
        return self.stopwatch.summary()

    def finished(self) -> int:
        """Finished trials in the study, interrupted ones not counted."""
        return finished_count(self.study)

    # Trials -----------------------------------------------------------------------------------

    @timed
    def ask(self, count: int) -> list[Ticket]:
        """Start ``count`` new trials (queued re-runs first) and open their runs."""
        self.ping()
        tickets = []
        for _ in range(count):
            trial = self.study.ask()
            params = {**self.spec.fixed, **suggest(trial, self.spec.space)}
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(
                self._study_id, trial.number
            )
            ticket = Ticket(trial.number, trial_id, 0, params)
            self._open_run(ticket)
            tickets.append(ticket)
        return tickets

    @timed
    def retry(self, ticket: Ticket, reason: str) -> Ticket:
        """Close a failed attempt's run and open the next attempt with the same params."""
        self._tracker.end_trial(
            ticket.key, state="FAIL", metrics={}, tags={"orch.fail_reason": reason}
        )
        following = replace(ticket, attempt=ticket.attempt + 1)
        self._open_run(following)
        return following

    @timed
    def report(
        self, key: str, trial_id: int, step: int, metrics: dict[str, float], ts: int
    ) -> bool:
        """Record one report; return whether the pruner stops the trial."""
        self._tracker.log_metrics(key, step, metrics, ts)
        value = metrics.get(self.metric) if self.metric else None
        if value is None:
            return False
        self.storage.set_trial_intermediate_value(trial_id, step, value)
        if self.spec.pruner.type == "none" or math.isnan(value):
            return False
        return self.pruner.prune(self.study, self.storage.get_trial(trial_id))

    @timed
    def set_tags(self, key: str, tags: dict[str, str]) -> None:
        """Tag an attempt's run."""
        self._tracker.set_tags(key, tags)

    @timed
    def log_artifact(self, key: str, name: str, data: bytes) -> None:
        """Store a file on an attempt's run."""
        self._tracker.log_artifact(key, name, data)

    @timed
    def finish(self, ticket: Ticket, outcome: Outcome, placement: Mapping[str, str]) -> None:
        """Tell the study how the trial ended and close its run."""
        attrs: dict[str, Any] = {
            RUN_ID_ATTR: self._run_ids.pop(ticket.key)(),
            "orch.attempts": ticket.attempt + 1,
            "orch.duration_s": round(outcome.duration_s, 3),
            **{f"orch.{k}": placement[k] for k in ("node_ip", "gpu_ids") if k in placement},
        }
        if outcome.reason:
            attrs[REASON_ATTR] = outcome.reason
        if outcome.diverged:
            attrs["diverged"] = True
        for name, value in attrs.items():
            self.storage.set_trial_user_attr(ticket.trial_id, name, value)
        state = TrialState[outcome.state]
        self.study.tell(
            ticket.number, outcome.values if state == TrialState.COMPLETE else None, state=state
        )
        tags = {"orch.fail_reason": outcome.reason} if outcome.reason else {}
        if outcome.diverged:
            tags["orch.diverged"] = "true"
        finite = {k: v for k, v in outcome.metrics.items() if not math.isinf(v)}
        self._tracker.end_trial(ticket.key, state=outcome.state, metrics=finite, tags=tags)
        self.ping()

    @timed
    def interrupt(self, tickets: list[Ticket], reason: str) -> None:
        """End unfinished attempts (FAIL, marked interrupted, queued to re-run); kill their runs."""
        for ticket in tickets:
            self._tracker.end_trial(
                ticket.key,
                state="FAIL",
                metrics={},
                tags={"orch.fail_reason": reason},
                status="KILLED",
            )
            self._run_ids.pop(ticket.key, None)
            requeue(self.study, self.storage, self.storage.get_trial(ticket.trial_id), reason)

    def close(self, status: str) -> list[str]:
        """Close the parent run with a summary of the study; return the tracker's errors."""
        heartbeat(self.study, self.owner, ended=True)
        counts = {
            state.name: 0 for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        }
        for trial in self.study.get_trials(deepcopy=False):
            if trial.state.name in counts and not trial.user_attrs.get(INTERRUPTED_ATTR):
                counts[trial.state.name] += 1
        metrics = {f"trials_{name.lower()}": float(n) for name, n in counts.items()}
        tags: dict[str, str] = {}
        if self.metric and counts["COMPLETE"]:
            best = self.study.best_trial
            metrics[f"best_{self.metric}"] = float(best.value)  # type: ignore[arg-type]
            tags["orch.best_trial"] = str(best.number)
            tags["orch.best_run_id"] = str(best.user_attrs.get(RUN_ID_ATTR, ""))
        return self._tracker.end_parent(status=status, metrics=metrics, tags=tags)

    # Internals --------------------------------------------------------------------------------

    def _open_run(self, ticket: Ticket) -> None:
        name = f"trial-{ticket.number}" + (f"-attempt-{ticket.attempt}" if ticket.attempt else "")
        self._run_ids[ticket.key] = self._tracker.start_trial(
            ticket.key,
            run_name=name,
            params=ticket.params,
            tags={
                "optuna.study_name": self.spec.name,
                "optuna.trial_number": str(ticket.number),
                "orch.attempt": str(ticket.attempt),
                "orch.owner": self.owner.id,
                "optuna.state": "RUNNING",
            },
        )

    def _recover(self) -> list[Any]:
        """Close and re-queue trials left RUNNING by the driver before (it is gone: checked)."""
        stale = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for trial in stale:
            requeue(
                self.study, self.storage, trial, "interrupted: the orch driver running it stopped"
            )
        return stale
