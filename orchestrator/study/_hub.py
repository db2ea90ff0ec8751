"""The study hub: the one owner of a sweep's study while it runs.

It asks the sampler for trials, records every report (Optuna intermediate values, MLflow metrics),
decides whether a trial stops (the spec's ``stop_when`` rules, then its pruner), and tells
outcomes. Trials on any node reach it through Ray, so the storage is only ever opened on the
driver's machine; it sends the tracker actor the runs to write without waiting for them.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import ray
from optuna.storages import get_storage
from optuna.trial import TrialState
from ray.exceptions import GetTimeoutError, RayError

from orchestrator._logging import quiet_libraries
from orchestrator._retry import STATUS_GROUP, Outage, display_url
from orchestrator._run_name import mark_run_name, state_mark, trial_run_name
from orchestrator._sqlite import tune_sqlite
from orchestrator._stopwatch import Stopwatch, timed
from orchestrator.names import StudyAttr, Tag, TrialAttr
from orchestrator.spec import Spec, TPESamplerSpec
from orchestrator.study._driver import Owner, heartbeat
from orchestrator.study._samplers import build_pruner, suggest
from orchestrator.study._snapshot import HistoryWindow, HubStorage
from orchestrator.study._stopping import StopRules
from orchestrator.study._storage import open_storage
from orchestrator.study._study import (
    count_states,
    drop_stray,
    finished_count,
    open_study,
    requeue,
)
from orchestrator.study._summary import study_summary
from orchestrator.trial import Outcome, Ticket

__all__ = ["HEARTBEAT_S", "StudyHub"]

#: How often the hub records that its driver is alive.
HEARTBEAT_S = 10.0


class StudyHub:
    """Owns the study during a sweep (see the module docstring)."""

    def __init__(
        self,
        *,
        spec: Spec,
        spec_yaml: str,
        storage_url: str,
        tracker: Any,
        owner: Owner,
        resume: bool,
        parent_tags: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.owner = owner
        self.stopwatch = Stopwatch()
        quiet_libraries()
        tune_sqlite()
        self.outage = Outage(
            f"the study database {display_url(storage_url)}", deadline_s=spec.store_timeout_s
        )
        self.storage = HubStorage(
            get_storage(open_storage(storage_url)), self.outage, window=_window(spec)
        )
        self.study = open_study(spec, self.storage, resume=resume, storage_url=storage_url)
        self.pruner = build_pruner(spec)
        self.stop_rules = StopRules(spec.stop_when)
        self.metric = spec.objectives[0].metric if len(spec.objectives) == 1 else None
        self._study_id = self.storage.get_study_id_from_name(spec.name)
        self._tracker = tracker  # the Tracker actor: writes are sent without waiting
        self._run_refs: dict[str, ray.ObjectRef[str]] = {}
        self._live: set[int] = set()  # numbers of the trials handed out and not ended
        self._last_beat = 0.0
        if resume:
            self._recover()
        # Not waited for: the tracker may still be starting (importing MLflow, opening its
        # store) while the first trials run; the id is recorded once it is there (see ping).
        self._parent_ref: ray.ObjectRef[str] = tracker.start_parent.remote(
            name=spec.name,
            spec_yaml=spec_yaml,
            tags={
                Tag.STUDY: spec.name,
                Tag.JOB: spec.job,
                **(parent_tags or {}),
                **({Tag.NOTE: spec.description} if spec.description else {}),
                **spec.tags,
            },
            resume_run_id=self.study.user_attrs.get(StudyAttr.PARENT_RUN_ID),
        )
        self.parent_run_id: str | None = None
        if resume:  # runs a lost driver or hub left open (its trials may be re-queued already)
            tracker.close_leftovers.remote(
                spec.name, "interrupted: the orch driver running it stopped"
            )
        self.ping()

    # Progress ---------------------------------------------------------------------------------

    def ping(self) -> None:
        """Record the driver as alive (at most every HEARTBEAT_S seconds), and the parent run.

        Raises:
            RayError: the tracker could not open the sweep's parent run.
        """
        self._record_parent(wait=False)
        now = time.time()
        if now - self._last_beat >= HEARTBEAT_S:
            heartbeat(self.study, self.owner)
            self._drop_strays()
            self._last_beat = now

    def alive(self) -> bool:
        """Answer a liveness probe (in its own concurrency group: at once, even mid-ask)."""
        return True

    def store_status(self) -> list[dict[str, Any]]:
        """The stores the sweep waits for now: the study's and the tracker's (see
        :meth:`orchestrator._retry.Outage.status`). Runs in the actor's STATUS_GROUP, so it
        answers while a store call blocks the hub."""
        found = [self.outage.status()]
        # A tracker busy or gone is not a store to wait for: the sweep meets it by its next call.
        with contextlib.suppress(RayError, GetTimeoutError):
            found += ray.get(
                self._tracker.store_status.options(concurrency_group=STATUS_GROUP).remote(),
                timeout=5,
            )
        return [status for status in found if status is not None]

    def stats(self) -> dict[str, dict[str, float]]:
        """Seconds and calls per hub activity so far."""
        return self.stopwatch.summary()

    def rule_warnings(self) -> list[str]:
        """``stop_when`` rules whose metric no trial of this sweep reported."""
        return self.stop_rules.never_reported()

    def count_finished(self) -> int:
        """Finished trials in the study, interrupted ones not counted."""
        return finished_count(self.study.get_trials(deepcopy=False))

    # Trials -----------------------------------------------------------------------------------

    @timed
    def ask(self, count: int) -> list[Ticket]:
        """Start ``count`` new trials (queued re-runs first) and open their runs."""
        self.ping()
        tickets = []
        for _ in range(count):
            with self.storage.asking(self._study_id):
                trial = self.study.ask()
                params = {**self.spec.fixed, **suggest(trial, self.spec.space)}
            self._live.add(trial.number)
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
        self._tracker.end_trial.remote(
            ticket.key,
            state="FAIL",
            metrics={},
            tags={Tag.FAIL_REASON: reason, **self._final_name(ticket, "FAIL")},
        )
        self.stop_rules.pop(ticket.key)
        following = replace(ticket, attempt=ticket.attempt + 1)
        self._open_run(following)
        return following

    @timed
    def report(
        self, key: str, trial_id: int, step: int, metrics: dict[str, float], ts: int
    ) -> bool:
        """Record one report; return whether a ``stop_when`` rule or the pruner stops the trial."""
        self._tracker.log_metrics.remote(key, step, metrics, ts)
        value = metrics.get(self.metric) if self.metric else None
        if value is not None:
            self.storage.set_trial_intermediate_value(trial_id, step, value)
        if self.stop_rules.check(key, step, metrics) is not None:
            return True
        if value is None or self.spec.pruner.type == "none" or math.isnan(value):
            return False
        return self.pruner.prune(self.study, self.storage.get_trial(trial_id))

    @timed
    def set_tags(self, key: str, tags: dict[str, str]) -> None:
        """Tag an attempt's run."""
        self._tracker.set_tags.remote(key, tags)

    @timed
    def log_artifact(
        self, key: str, name: str, data: bytes, part: int = 0, last: bool = True
    ) -> None:
        """Store a file (or one ``part`` of a large one) on an attempt's run."""
        self._tracker.log_artifact.remote(key, name, data, part=part, last=last)

    @timed
    def end_trial(self, ticket: Ticket, outcome: Outcome, placement: Mapping[str, str]) -> None:
        """Tell the study how the trial ended and close its run."""
        stop = self.stop_rules.pop(ticket.key)
        if stop is not None and outcome.state == "PRUNED" and not outcome.diverged:
            outcome = replace(outcome, reason=stop.reason)
        else:
            stop = None
        attrs: dict[str, Any] = {
            TrialAttr.RUN_ID: self._run_id(ticket.key),
            TrialAttr.ATTEMPTS: ticket.attempt + 1,
            TrialAttr.DURATION_S: round(outcome.duration_s, 3),
        }
        for key, attr in (("node_ip", TrialAttr.NODE_IP), ("gpu_ids", TrialAttr.GPU_IDS)):
            if key in placement:
                attrs[attr] = placement[key]
        if outcome.reason:
            attrs[TrialAttr.FAIL_REASON] = outcome.reason
        if outcome.diverged:
            attrs[TrialAttr.DIVERGED] = True
        if stop is not None:
            attrs[TrialAttr.STOP_RULE] = stop.rule
        for name, value in attrs.items():
            self.storage.set_trial_user_attr(ticket.trial_id, name, value)
        state = TrialState[outcome.state]
        self.study.tell(
            ticket.number,
            outcome.values if state == TrialState.COMPLETE else None,
            state=state,
            skip_if_finished=True,  # told already when the reply to a first try was lost
        )
        tags = self._final_name(ticket, outcome.state, diverged=outcome.diverged)
        if outcome.reason:
            tags[Tag.FAIL_REASON] = outcome.reason
        self._live.discard(ticket.number)
        if outcome.diverged:
            tags[Tag.DIVERGED] = "true"
        if stop is not None:
            tags[Tag.STOP_RULE] = stop.rule
        finite = {k: v for k, v in outcome.metrics.items() if not math.isinf(v)}
        self._tracker.end_trial.remote(ticket.key, state=outcome.state, metrics=finite, tags=tags)
        self.ping()

    @timed
    def interrupt(self, tickets: list[Ticket], reason: str) -> None:
        """End unfinished attempts (FAIL, marked interrupted, queued to re-run); kill their runs."""
        for ticket in tickets:
            self._tracker.end_trial.remote(
                ticket.key,
                state="FAIL",
                metrics={},
                tags={
                    Tag.FAIL_REASON: reason,
                    **self._final_name(ticket, "FAIL", interrupted=True),
                },
                status="KILLED",
            )
            self._run_refs.pop(ticket.key, None)
            self.stop_rules.pop(ticket.key)
            requeue(self.study, self.storage, self.storage.get_trial(ticket.trial_id), reason)
            self._live.discard(ticket.number)

    def close(self, status: str) -> tuple[dict[str, Any], list[str]]:
        """Close the parent run with a summary of the study.

        Returns:
            The study's summary (:func:`~orchestrator.study.study_summary`, best trial only)
            and the tracker's errors.
        """
        self._record_parent(wait=True)
        heartbeat(self.study, self.owner, ended=True)
        counts = count_states(self.study.get_trials(deepcopy=False))
        metrics = {
            f"trials_{name.lower()}": float(counts[name]) for name in ("COMPLETE", "PRUNED", "FAIL")
        }
        tags: dict[str, str] = {}
        if self.metric and counts["COMPLETE"]:
            best = self.study.best_trial
            metrics[f"best_{self.metric}"] = float(best.value)  # type: ignore[arg-type]
            tags[Tag.BEST_TRIAL] = str(best.number)
            tags[Tag.BEST_RUN_ID] = str(best.user_attrs.get(TrialAttr.RUN_ID, ""))
        errors: list[str] = ray.get(
            self._tracker.end_parent.remote(status=status, metrics=metrics, tags=tags)
        )
        return study_summary(self.study, top=1), errors

    # Internals --------------------------------------------------------------------------------

    def _run_name(self, ticket: Ticket) -> str:
        """``#7 x=1.46 shape=ridge``: the trial's number and its sampled params."""
        sampled = {k: v for k, v in ticket.params.items() if k in self.spec.space}
        return trial_run_name(ticket.number, ticket.attempt, sampled)

    def _final_name(
        self, ticket: Ticket, state: str, *, diverged: bool = False, interrupted: bool = False
    ) -> dict[str, str]:
        """The run-name tag of an attempt ending in ``state``: marked unless COMPLETE."""
        mark = state_mark(state, diverged=diverged, interrupted=interrupted)
        return {Tag.RUN_NAME: mark_run_name(self._run_name(ticket), mark)} if mark else {}

    def _record_parent(self, *, wait: bool) -> None:
        """Store the parent run's id in the study once the tracker has opened the run."""
        if self.parent_run_id is not None:
            return
        if not wait and not ray.wait([self._parent_ref], timeout=0)[0]:
            return
        self.parent_run_id = ray.get(self._parent_ref)
        self.study.set_user_attr(StudyAttr.PARENT_RUN_ID, self.parent_run_id)

    def _open_run(self, ticket: Ticket) -> None:
        self._run_refs[ticket.key] = self._tracker.start_trial.remote(
            ticket.key,
            run_name=self._run_name(ticket),
            params=ticket.params,
            tags={
                Tag.STUDY_NAME: self.spec.name,
                Tag.TRIAL_NUMBER: str(ticket.number),
                Tag.ATTEMPT: str(ticket.attempt),
                Tag.OWNER: self.owner.id,
                Tag.STATE: "RUNNING",
            },
        )

    def _run_id(self, key: str) -> str:
        """The run id of an attempt (opened without waiting); empty if the tracker failed it."""
        try:
            return str(ray.get(self._run_refs.pop(key)))
        except RayError:
            return ""

    def _drop_strays(self) -> None:
        """End the trials no one holds: made twice by a creation retried over a lost reply
        (a RUNNING trial the hub never handed out, or a second queued copy of a re-run)."""
        unfinished = self.study.get_trials(
            deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
        )
        queued: set[Any] = set()
        for trial in unfinished:
            rerun_of = trial.user_attrs.get(TrialAttr.RERUN_OF)
            if trial.state == TrialState.RUNNING and trial.number not in self._live:
                drop_stray(self.study, self.storage, trial)
            elif trial.state == TrialState.WAITING and rerun_of is not None:
                if rerun_of in queued:
                    drop_stray(self.study, self.storage, trial)
                queued.add(rerun_of)

    def _recover(self) -> None:
        """Close and re-queue trials left RUNNING by the driver before (it is gone: checked)."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            requeue(
                self.study, self.storage, trial, "interrupted: the orch driver running it stopped"
            )


def _window(spec: Spec) -> HistoryWindow | None:
    """The history window of a TPE spec (None: the sampler sees every trial)."""
    if not isinstance(spec.sampler, TPESamplerSpec) or spec.sampler.history == "all":
        return None
    return HistoryWindow(recent=spec.sampler.history.recent, best=spec.sampler.history.best)
