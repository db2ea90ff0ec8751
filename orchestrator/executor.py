"""Running a sweep's trials on Ray: the session, the hub and tracker actors, the trial loop."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import ray
import ray.exceptions as rex
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator.attempts import Outcome, Ticket
from orchestrator.errors import ClusterError
from orchestrator.hub import StudyHub
from orchestrator.spec import Resources, Spec
from orchestrator.stopwatch import Stopwatch
from orchestrator.tracking import Tracker
from orchestrator.worker import run_attempt

__all__ = ["Listener", "LoopResult", "TrialLoop", "ray_session", "start_actors"]

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


@contextlib.contextmanager
def ray_session(
    *, address: str | None, project: Path, log_to_driver: bool = True
) -> Iterator[None]:
    """Start a local Ray, or connect to a cluster and ship the project folder to its workers.

    A Ray already initialised in this process is used as is and left running.
    """
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _use_token_if_available()
    try:
        ray.init(
            address=address,
            include_dashboard=False if address is None else None,
            runtime_env=_shipped_project(project) if address is not None else None,
            log_to_driver=log_to_driver,
            logging_level="WARNING",
            configure_logging=True,
        )
    except Exception as exc:
        where = address or "a local Ray"
        raise ClusterError(f"cannot start or reach {where}: {exc}".splitlines()[0]) from None
    try:
        yield
    finally:
        ray.shutdown()


def _use_token_if_available() -> None:
    """Send Ray's auth token to the cluster when one exists (RAY_AUTH_TOKEN, its path, or
    ~/.ray/auth_token): Ray's client only sends it in token mode, which it reads at import."""
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _shipped_project(project: Path) -> dict[str, Any] | None:
    """The project folder as the workers' working dir, unless a submitted Ray job ships it."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
        return None
    return {
        "working_dir": str(project),
        "excludes": [".git", ".venv", ".orch", "mlruns", "mlartifacts", "__pycache__"],
    }


def start_actors(
    *,
    spec: Spec,
    spec_yaml: str,
    storage_url: str,
    tracking_uri: str,
    artifact_location: str | None,
    owner: Any,
    resume: bool,
    parent_tags: Mapping[str, str],
) -> tuple[Any, Any]:
    """Start the tracker and study hub actors on this driver's node; return their handles."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    options = {"num_cpus": 0, "scheduling_strategy": here, "max_restarts": 0}
    tracker = (
        ray.remote(Tracker)
        .options(**options)
        .remote(
            tracking_uri=tracking_uri, experiment=spec.name, artifact_location=artifact_location
        )
    )
    hub = (
        ray.remote(StudyHub)
        .options(**options)
        .remote(
            spec=spec,
            spec_yaml=spec_yaml,
            storage_url=storage_url,
            tracker=RemoteTracker(tracker),
            owner=owner,
            resume=resume,
            parent_tags=parent_tags,
        )
    )
    ray.get(hub.ping.remote())  # surfaces a StudyError from the hub's constructor
    return hub, tracker


class RemoteTracker:
    """The tracker actor as the hub's TrackerPort: writes are sent without waiting."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def start_parent(self, **kwargs: Any) -> str:
        return ray.get(self._actor.start_parent.remote(**kwargs))

    def close_open_children(self, reason: str) -> None:
        self._actor.close_open_children.remote(reason)

    def start_trial(self, key: str, **kwargs: Any) -> Callable[[], str]:
        ref = self._actor.start_trial.remote(key, **kwargs)

        def run_id() -> str:
            try:
                return ray.get(ref)
            except rex.RayError:
                return ""

        return run_id

    def log_metrics(self, *args: Any) -> None:
        self._actor.log_metrics.remote(*args)

    def set_tags(self, key: str, tags: Mapping[str, str]) -> None:
        self._actor.set_tags.remote(key, tags)

    def log_artifact(self, key: str, name: str, data: bytes) -> None:
        self._actor.log_artifact.remote(key, name, data)

    def end_trial(self, key: str, **kwargs: Any) -> None:
        self._actor.end_trial.remote(key, **kwargs)

    def end_parent(self, **kwargs: Any) -> list[str]:
        return ray.get(self._actor.end_parent.remote(**kwargs))


class Listener(Protocol):
    """Told what the loop does, e.g. to draw progress."""

    def started(self, ticket: Ticket) -> None: ...

    def finished(self, ticket: Ticket, outcome: Outcome) -> None: ...

    def retrying(self, ticket: Ticket, reason: str) -> None: ...

    def waiting(self, message: str) -> None: ...


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
            spec.pruner.type != "none",
            tracking_uri,
        )
        self._capacity = 1
        self._capacity_at = -math.inf
        self._ping_at = time.monotonic()

    def run(self) -> LoopResult:
        """Run until done or stopped; on stop, return the tickets still running."""
        finished = ray.get(self.hub.finished.remote())
        while finished < self.target or self._running:
            if self.stop.is_set():
                return LoopResult(interrupted=True, unfinished=self.abort())
            wanted = min(self._slots(), self.target - finished - len(self._running))
            if wanted > 0:
                with self.stopwatch.time("ask"):
                    tickets = ray.get(self.hub.ask.remote(wanted))
                with self.stopwatch.time("launch"):
                    for ticket in tickets:
                        self._launch(ticket)
            finished += self._collect()
            self._enforce_timeouts()
            self._keep_alive()
        ray.get(self._finish_refs)
        return LoopResult()

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
            self._finish_refs.append(self.hub.finish.remote(running.ticket, outcome, placement))
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
            reason = f"{type(exc).__name__}: {_first_line(exc)}"
            if ticket.attempt < self.spec.retries:
                self._retry(ticket, reason)
                return None, {}
            return Outcome("FAIL", reason=f"{reason} (after {ticket.attempt + 1} attempts)"), {}
        except rex.RayError as exc:
            return Outcome("FAIL", reason=f"{type(exc).__name__}: {_first_line(exc)}"), {}
        if outcome.job_error and self.spec.retry_exceptions and ticket.attempt < self.spec.retries:
            self._retry(ticket, outcome.reason or "job raised")
            return None, {}
        return outcome, placement

    def _retry(self, ticket: Ticket, reason: str) -> None:
        self.listener.retrying(ticket, reason)
        self._launch(ray.get(self.hub.retry.remote(ticket, reason)))

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
    total = ray.cluster_resources()
    limits = []
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


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:500] if lines else ""
