"""The trial loop: keep ``parallel`` trial tasks running on Ray until the study is done."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray
import ray.exceptions as rex

from orchestrator._retry import STATUS_GROUP
from orchestrator._stopwatch import Stopwatch
from orchestrator.engine._lost import LOST_AFTER_S, PROBE_GROUP, RayLost
from orchestrator.engine._worker import run_attempt
from orchestrator.errors import StoreUnavailable, one_line
from orchestrator.trial import Outcome, Ticket

if TYPE_CHECKING:
    from orchestrator.spec import Resources, Spec

__all__ = ["SYSTEM_FAILURES", "Listener", "LoopResult", "TrialLoop", "cluster_capacity"]

#: Failures of the machine rather than of the job: the attempt is retried with the same params.
SYSTEM_FAILURES = (
    rex.WorkerCrashedError,
    rex.NodeDiedError,
    rex.LocalRayletDiedError,
    rex.ObjectLostError,
    rex.OwnerDiedError,
    rex.OutOfMemoryError,
    rex.RaySystemError,
)
_POLL_S = 0.25
_CAPACITY_REFRESH_S = 5.0
_PING_S = 5.0
_PROBE_S = 5.0
_STORES_POLL_S = 1.0  # how often the loop asks whether the hub or tracker waits for a database
_STORES_REPEAT_S = 30.0  # how often a wait that goes on is said again


class Listener:
    """Told what the sweep does, e.g. to draw progress; override what you need."""

    def phase(self, step: str) -> None:
        """The sweep starts or ends and waits on ``step`` (e.g. "starting Ray")."""

    def started(self, ticket: Ticket) -> None:
        """An attempt was launched."""

    def finished(self, ticket: Ticket, outcome: Outcome) -> None:
        """A trial ended (not called for attempts that are retried)."""

    def retrying(self, ticket: Ticket, reason: str) -> None:
        """An attempt was lost (its worker or node died) and runs again."""

    def waiting(self, message: str) -> None:
        """The loop cannot go on yet, and says why."""

    def stopping(self, running: int) -> None:
        """Ctrl-C: the loop closes its ``running`` trials and stops."""


@dataclass
class _Running:
    ticket: Ticket
    started: float
    timed_out: bool = False


@dataclass
class LoopResult:
    """How the loop ended."""

    interrupted: bool = False
    unfinished: list[Ticket] = field(default_factory=list)


class TrialLoop:
    """Keeps up to ``parallel`` trials running until the study holds ``target`` finished trials."""

    def __init__(
        self,
        *,
        spec: Spec,
        hub: Any,
        target: int,
        search_path: list[str],
        tracking_uri: str,
        listener: Listener,
        stop: threading.Event,
    ) -> None:
        self.spec = spec
        self.hub = hub
        self.target = target
        self.listener = listener
        self.stop = stop
        self.stopwatch = Stopwatch()
        self._running: dict[Any, _Running] = {}
        self._finish_refs: list[Any] = []
        self._task = ray.remote(run_attempt).options(
            max_retries=0, **_task_resources(spec.resources)
        )
        self._args = (
            spec.job,
            search_path,
            [o.metric for o in spec.objectives],
            spec.stops_trials,
            tracking_uri,
        )
        self._capacity = 1
        self._capacity_at = -math.inf
        self._ping_at = time.monotonic()
        self._probe: tuple[Any, float] | None = None  # a liveness probe and when it was sent
        self._probe_at = time.monotonic()
        self._stores_ref: Any = None
        self._stores_at = -math.inf
        self._waiting_for: dict[str, float] = {}  # store -> when its wait was last said

    def run(self) -> LoopResult:
        """Run until done or stopped; on stop, return the tickets still running.

        Raises:
            RayLost: the study hub stopped answering (Ray is gone).
            RayActorError: the study hub died.
            StoreUnavailable: a database stayed unreachable past ``store_timeout_s``.
        """
        finished = self.get(self.hub.count_finished.remote())
        while finished < self.target or self._running:
            if self.stop.is_set():
                self.listener.stopping(len(self._running))
                return LoopResult(interrupted=True, unfinished=self.abort())
            wanted = min(self._slots(), self.target - finished - len(self._running))
            if wanted > 0:
                with self.stopwatch.time("ask"):
                    tickets = self.get(self.hub.ask.remote(wanted))
                with self.stopwatch.time("launch"):
                    for ticket in tickets:
                        self._launch(ticket)
            finished += self._collect()
            self._enforce_timeouts()
            self._keep_alive()
            self._watch_stores()
        self.get(self._finish_refs)
        return LoopResult()

    def get(self, refs: Any) -> Any:
        """``ray.get(refs)`` of hub calls, checking meanwhile that Ray still answers and saying
        when the hub or tracker waits for a database.

        Raises:
            RayLost: the hub left a liveness probe unanswered for ``LOST_AFTER_S``.
            StoreUnavailable: a database stayed unreachable past ``store_timeout_s``.
        """
        pending = refs if isinstance(refs, list) else [refs]
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=_POLL_S)
            if pending:
                self._check_alive()
                self._watch_stores()
        return ray.get(refs)

    def _check_alive(self) -> None:
        """Send a liveness probe every few seconds; raise RayLost when one goes unanswered.

        The hub answers probes in a thread of their own, so a long ask does not delay them:
        silence means its process, its node or the connection to Ray is gone.
        """
        now = time.monotonic()
        if self._probe is not None:
            ref, sent = self._probe
            if ray.wait([ref], timeout=0)[0]:
                ray.get(ref)
                self._probe = None
            elif now - sent > LOST_AFTER_S:
                raise RayLost(f"Ray has not answered for {LOST_AFTER_S:.0f} s")
        if self._probe is None and now - self._probe_at >= _PROBE_S:
            self._probe = (self.hub.alive.options(concurrency_group=PROBE_GROUP).remote(), now)
            self._probe_at = now

    def _watch_stores(self) -> None:
        """Tell the listener when a store becomes unreachable (again every 30 s) and when it
        is back; raise when one is gone for good. Polls the hub in its status group."""
        if self._stores_ref is not None:
            ready, _ = ray.wait([self._stores_ref], timeout=0)
            if not ready:
                return
            statuses: list[dict[str, Any]] = ray.get(self._stores_ref)
            self._stores_ref = None
            self._say_stores(statuses)
        if time.monotonic() - self._stores_at >= _STORES_POLL_S:
            self._stores_at = time.monotonic()
            self._stores_ref = self.hub.store_status.options(
                concurrency_group=STATUS_GROUP
            ).remote()

    def _say_stores(self, statuses: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for status in statuses:
            if status["lost"]:
                raise StoreUnavailable(status["lost"])
            said = self._waiting_for.get(status["store"])
            if said is None or now - said >= _STORES_REPEAT_S:
                self.listener.waiting(status["message"])
                self._waiting_for[status["store"]] = now
        for store in set(self._waiting_for) - {status["store"] for status in statuses}:
            del self._waiting_for[store]
            self.listener.waiting(f"{store} is reachable again; the sweep goes on")

    def _slots(self) -> int:
        now = time.monotonic()
        if self.spec.parallel is None and now - self._capacity_at > _CAPACITY_REFRESH_S:
            self._capacity = cluster_capacity(self.spec.resources)
            self._capacity_at = now
            if self._capacity == 0:
                self.listener.waiting("no node has the resources one trial needs; waiting")
        limit = self.spec.parallel or max(self._capacity, 1)
        return limit - len(self._running)

    def _launch(self, ticket: Ticket) -> None:
        ref = self._task.remote(ticket, self.hub, *self._args)
        self._running[ref] = _Running(ticket, time.monotonic())
        self.listener.started(ticket)

    def _collect(self) -> int:
        """Handle every attempt that ended; return how many trials finished."""
        if not self._running:
            return 0
        with self.stopwatch.time("wait"):
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=_POLL_S)
            if ready:
                ready, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
        with self.stopwatch.time("collect"):
            done = self._handle(ready)
        self._check_finish_refs()
        return done

    def _handle(self, ready: list[Any]) -> int:
        done = 0
        for ref in ready:
            running = self._running.pop(ref)
            outcome, placement = self._result(ref, running)
            if outcome is None:
                continue  # retried
            if not outcome.duration_s:  # the worker died (or never ran the job): time it here
                outcome.duration_s = time.monotonic() - running.started
            self._finish_refs.append(self.hub.end_trial.remote(running.ticket, outcome, placement))
            self.listener.finished(running.ticket, outcome)
            done += 1
        return done

    def _result(self, ref: Any, running: _Running) -> tuple[Outcome | None, dict[str, str]]:
        ticket = running.ticket
        try:
            outcome, placement = ray.get(ref)
        except rex.TaskCancelledError:
            limit = self.spec.trial_timeout_s
            return Outcome("FAIL", reason=f"timed out after {limit:g}s"), {}
        except SYSTEM_FAILURES as exc:
            reason = one_line(exc, limit=500, with_type=True)
            if ticket.attempt < self.spec.retries:
                self._retry(ticket, reason)
                return None, {}
            return Outcome("FAIL", reason=f"{reason} (after {ticket.attempt + 1} attempts)"), {}
        except StoreUnavailable:  # the trial's reports could not be stored: --resume reruns it
            raise
        except rex.RayError as exc:
            return Outcome("FAIL", reason=one_line(exc, limit=500, with_type=True)), {}
        if outcome.job_error and self.spec.retry_exceptions and ticket.attempt < self.spec.retries:
            self._retry(ticket, outcome.reason or "job raised")
            return None, {}
        return outcome, placement

    def _retry(self, ticket: Ticket, reason: str) -> None:
        # The hub first: when all of Ray is gone this raises, and no retry is announced.
        again = self.get(self.hub.retry.remote(ticket, reason))
        self.listener.retrying(ticket, reason.splitlines()[0][:160])
        self._launch(again)

    def _enforce_timeouts(self) -> None:
        limit = self.spec.trial_timeout_s
        if limit is None:
            return
        now = time.monotonic()
        for ref, running in self._running.items():
            if not running.timed_out and now - running.started > limit:
                running.timed_out = True
                ray.cancel(ref, force=True)

    def _keep_alive(self) -> None:
        if time.monotonic() - self._ping_at > _PING_S:
            self._finish_refs.append(self.hub.ping.remote())
            self._ping_at = time.monotonic()
        self._check_alive()

    def _check_finish_refs(self) -> None:
        """Raise the first error of a hub call sent without waiting; forget the ones done."""
        if not self._finish_refs:
            return
        done, self._finish_refs = ray.wait(
            self._finish_refs, num_returns=len(self._finish_refs), timeout=0
        )
        ray.get(done)

    def abort(self) -> list[Ticket]:
        """Cancel every running attempt; return their tickets (for the hub to close)."""
        for ref in self._running:
            ray.cancel(ref, force=True)
        with contextlib.suppress(rex.RayError):
            ray.get(self._finish_refs)
        tickets = [running.ticket for running in self._running.values()]
        self._running.clear()
        return tickets


def cluster_capacity(resources: Resources) -> int:
    """How many trials with ``resources`` the cluster's total resources hold at once."""
    total: dict[str, float] = ray.cluster_resources()
    limits: list[float] = []
    if resources.cpus > 0:
        limits.append(total.get("CPU", 0.0) / resources.cpus)
    if resources.gpus > 0:
        limits.append(total.get("GPU", 0.0) / resources.gpus)
    if resources.memory_gb:
        limits.append(total.get("memory", 0.0) / (resources.memory_gb * 1e9))
    for name, amount in resources.custom.items():
        if amount > 0:
            limits.append(total.get(name, 0.0) / amount)
    if not limits:
        return int(total.get("CPU", 1))
    return math.floor(min(limits) + 1e-9)


def _task_resources(resources: Resources) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": resources.cpus, "num_gpus": resources.gpus}
    if resources.memory_gb:
        options["memory"] = int(resources.memory_gb * 1e9)
    if resources.accelerator_type:
        options["accelerator_type"] = resources.accelerator_type
    if resources.custom:
        options["resources"] = dict(resources.custom)
    return options
