"""The side of a trial that runs in a Ray worker: call the job, relay its reports to the hub."""

from __future__ import annotations

import collections
import contextlib
import io
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import ray

from orchestrator.errors import SpecError
from orchestrator.names import Tag
from orchestrator.trial import Outcome, Ticket, Trial, call_job, load_job

__all__ = ["HubSink", "OutputLog", "run_attempt"]


class HubSink:
    """Sends a trial's reports and files to the study hub actor.

    Reports wait for the hub's answer (stop or go on) only when the hub may stop a trial (the
    spec has a pruner or ``stop_when`` rules); otherwise they are fire-and-forget and
    :meth:`close` waits for the last one (the actor keeps their order).
    """

    def __init__(self, hub: Any, ticket: Ticket, *, wait_for_answer: bool) -> None:
        self._hub = hub
        self._ticket = ticket
        self._wait = wait_for_answer
        self._last: Any = None

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        ref = self._hub.report.remote(
            self._ticket.key, self._ticket.trial_id, step, metrics, int(time.time() * 1000)
        )
        self._last = ref
        return bool(ray.get(ref)) if self._wait else False

    def log_artifact(self, name: str, data: bytes, *, part: int = 0, last: bool = True) -> None:
        if part:  # one part of a large file in flight at a time: memory stays bounded
            self.close()
        self._last = self._hub.log_artifact.remote(self._ticket.key, name, data, part, last)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._last = self._hub.set_tags.remote(self._ticket.key, tags)

    def close(self) -> None:
        if self._last is not None:
            ray.get(self._last)
            self._last = None


def run_attempt(
    ticket: Ticket,
    hub: Any,
    job_ref: str,
    search_path: Sequence[str],
    objectives: Sequence[str],
    wait_for_answer: bool,
    tracking_uri: str,
) -> tuple[Outcome, dict[str, str]]:
    """Run one attempt of a trial; return its outcome and where it ran.

    Raises only :class:`~orchestrator.errors.StoreUnavailable` (through Ray): the hub could
    not store the trial's reports, so the sweep stops and ``--resume`` runs the trial again.

    ``wait_for_answer``: whether each report waits for the hub to say if the trial stops.
    """
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri)
    gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
    placement = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
        "gpu_ids": ",".join(gpu_ids),
    }
    sink = HubSink(hub, ticket, wait_for_answer=wait_for_answer)
    sink.set_tags({Tag.PLACEMENT_PREFIX + key: value for key, value in placement.items()})
    trial = Trial(
        number=ticket.number,
        params=ticket.params,
        sink=sink,
        attempt=ticket.attempt,
        gpu_ids=gpu_ids,
    )
    started = time.perf_counter()
    log = OutputLog()
    with _tee_output(log), _LiveUpload(log, sink):
        outcome = _call_job(job_ref, search_path, trial, objectives)
    outcome.duration_s = time.perf_counter() - started
    trial.close()
    return outcome, placement


def _call_job(
    job_ref: str, search_path: Sequence[str], trial: Trial, objectives: Sequence[str]
) -> Outcome:
    try:
        job = load_job(job_ref, search_path=search_path)
    except SpecError as exc:
        return Outcome("FAIL", reason=str(exc))
    return call_job(job, trial, objectives)


class OutputLog(io.TextIOBase):
    """What a job printed, keeping the last ``limit`` characters (the end explains a failure)."""

    def __init__(self, limit: int = 4_000_000) -> None:
        self._chunks: collections.deque[str] = collections.deque()
        self._size = 0
        self._dropped = 0
        self._limit = limit
        self._lock = threading.Lock()

    @property
    def written(self) -> int:
        """Characters written so far (kept or dropped)."""
        return self._size + self._dropped

    def write(self, text: str) -> int:
        with self._lock:
            self._chunks.append(text)
            self._size += len(text)
            while self._size > self._limit and len(self._chunks) > 1:
                dropped = self._chunks.popleft()
                self._size -= len(dropped)
                self._dropped += len(dropped)
        return len(text)

    def text(self) -> str:
        """The kept output, with a note of how much was dropped from its start."""
        with self._lock:
            body = "".join(self._chunks)
            dropped = self._dropped
        return f"[... {dropped} characters dropped ...]\n{body}" if dropped else body


class _LiveUpload:
    """Stores ``output.log`` on the trial's run while the job runs, each time it grew after a
    pause, and once more at the end: a worker that dies (``os._exit``, killed for memory)
    keeps what it printed until then.

    The pause grows with the log (1 s, plus 1 s per 200 kB, at most 30 s), so a chatty job
    does not resend megabytes every second.
    """

    def __init__(self, log: OutputLog, sink: HubSink) -> None:
        self._log = log
        self._sink = sink
        self._sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orch-output-log", daemon=True)

    def __enter__(self) -> _LiveUpload:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._send()

    def _run(self) -> None:
        while not self._stop.wait(min(1.0 + self._sent / 200_000, 30.0)):
            self._send()

    def _send(self) -> None:
        written = self._log.written
        if written != self._sent:
            self._sink.log_artifact("output.log", self._log.text().encode())
            self._sent = written


class _Tee(io.TextIOBase):
    def __init__(self, *streams: TextIO | io.TextIOBase) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()


@contextlib.contextmanager
def _tee_output(log: OutputLog) -> Iterator[None]:
    """Copy what the job prints into ``log`` while it still reaches the worker's own output."""
    with (
        contextlib.redirect_stdout(_Tee(sys.stdout, log)),
        contextlib.redirect_stderr(_Tee(sys.stderr, log)),
    ):
        yield
