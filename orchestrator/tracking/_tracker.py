"""MLflow bookkeeping of a sweep: one parent run, one nested child run per trial attempt.

MLflow (seconds to import) is imported inside the functions that use it: the driver imports
this module to start the tracker actor, and Ray imports it in every process that receives a
tracker handle (the study hub), neither of which writes to MLflow.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator._logging import quiet_libraries
from orchestrator._retry import Found, Outage, display_url, retrying
from orchestrator._run_name import mark_run_name
from orchestrator._stopwatch import Stopwatch, timed
from orchestrator.credentials import apply_mlflow_credentials
from orchestrator.errors import one_line, redact
from orchestrator.names import RunName, Tag
from orchestrator.tracking._artifacts import ArtifactSpool, upload_artifact
from orchestrator.tracking._schema import seed_sqlite_store

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

__all__ = [
    "RUN_STATUS",
    "Tracker",
    "close_open_runs",
    "close_study_runs",
    "ensure_experiment",
    "open_children",
]

logger = logging.getLogger(__name__)

#: MLflow run status for each final Optuna state (pruned trials ran fine, they just stopped early).
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "KILLED": "KILLED"}
PARAMS_WAIT_S = 5.0  # longest a new run waits for its params when nothing else is written
#: Metrics held while MLflow does not take them (about 200 bytes each): past this, new ones are
#: dropped and counted, so a store that is down cannot grow the tracker without bound.
MAX_PENDING_METRICS = 500_000
#: Distinct problems kept (each with how often it happened); later distinct ones are counted.
_MAX_PROBLEMS = 20


_Method = TypeVar("_Method", bound=Callable[..., Any])
_T = TypeVar("_T")


def _recorded(method: _Method) -> _Method:
    """Make a fire-and-forget tracker call record its error instead of raising it."""

    @functools.wraps(method)
    def wrapper(self: Tracker, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            logger.warning("MLflow %s failed: %s", method.__name__, one_line(exc))
            self._problems.add(f"{method.__name__}: {one_line(exc, with_type=True)}")
            return None

    return wrapper  # type: ignore[return-value]


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created (or restored from the bin) if needed."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


class _Problems:
    """What went wrong, bounded: each distinct line once, with how often it happened."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._others = 0

    def add(self, line: str) -> None:
        if line in self._counts or len(self._counts) < _MAX_PROBLEMS:
            self._counts[line] = self._counts.get(line, 0) + 1
        else:
            self._others += 1

    def drain(self) -> list[str]:
        """The lines so far (``... (N times)`` when repeated); forget them."""
        lines = [f"{line} ({n} times)" if n > 1 else line for line, n in self._counts.items()]
        if self._others:
            lines.append(f"{self._others} more problems")
        self._counts, self._others = {}, 0
        return lines


class Tracker:
    """Writes runs, params, metrics, tags and artifacts; metrics are batched in the background.

    Trial attempts are addressed by a key (``"<trial number>.<attempt>"``) so callers never wait
    for MLflow to hand out run ids. Every MLflow call is retried while the tracking store is
    unreachable, for up to ``store_timeout_s`` (see :mod:`orchestrator._retry`).
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment: str,
        artifact_location: str | None = None,
        flush_interval_s: float = 0.5,
        params_wait_s: float = PARAMS_WAIT_S,
        max_pending: int = MAX_PENDING_METRICS,
        store_timeout_s: float = 300.0,
    ) -> None:
        self.stopwatch = Stopwatch()
        quiet_libraries()
        from mlflow import MlflowClient

        from orchestrator._sqlite import tune_sqlite

        tune_sqlite()
        apply_mlflow_credentials(tracking_uri)
        seed_sqlite_store(tracking_uri)
        self.outage = Outage(
            f"the tracking store {display_url(tracking_uri)}", deadline_s=store_timeout_s
        )
        #: This tracker's id: the start of each of its runs' Tag.RUN_KEY.
        self.id = uuid.uuid4().hex[:12]
        # Retried like every later call: the tracker may still be opening its store when a
        # database restart begins (trials run meanwhile), which must not kill the actor.
        self.client = self._retry(lambda: MlflowClient(tracking_uri))
        self.experiment_id = self._retry(
            lambda: ensure_experiment(self.client, experiment, artifact_location)
        )
        self.parent_run_id: str | None = None
        #: Parent artifacts sent (by the driver) before the hub had the parent run opened.
        self._parent_files: list[tuple[str, bytes]] = []
        self._runs: dict[str, str] = {}
        self._last_step: dict[str, int] = {}
        self._pending: dict[str, list[Metric]] = defaultdict(list)
        self._queued = 0  # metrics in _pending
        self._max_pending = max_pending
        self._dropped = 0
        self._where = redact(tracking_uri)
        # A run's params ride along with its next write (the worker's first tags, normally);
        # the flusher writes those still waiting after ``params_wait_s``.
        self._params_due: dict[str, tuple[float, list[Param]]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._problems = _Problems()
        self._spool = ArtifactSpool()
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_loop,
            args=(flush_interval_s, params_wait_s),
            daemon=True,
            name="orch-tracker",
        )
        self._flusher.start()

    # Parent run -----------------------------------------------------------------------------

    def start_parent(
        self,
        *,
        name: str,
        spec_yaml: str,
        tags: Mapping[str, str],
        resume_run_id: str | None = None,
    ) -> str:
        """Create the sweep's parent run (or reopen ``resume_run_id``); return its id."""
        if resume_run_id is not None:
            self._retry(lambda: self.client.update_run(resume_run_id, status="RUNNING"))
            self.parent_run_id = resume_run_id
        else:
            self.parent_run_id = self._create_run("parent", name, tags)
        parent = self.parent_run_id
        self._retry(lambda: self.client.log_text(parent, spec_yaml, "spec.yaml"))
        for file_name, data in self._parent_files:
            self._upload(parent, file_name, data)
        self._parent_files.clear()
        return parent

    def end_parent(
        self, *, status: str, metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> list[str]:
        """Log the sweep summary, close the parent run with ``status``; return all errors met."""
        errors = self.close()
        parent = self.parent_run_id
        if parent is not None:
            self._write(parent, metrics=_metrics(metrics, step=0), tags=_tags(tags))
            self._retry(lambda: self.client.set_terminated(parent, status))
        return errors

    @_recorded
    def close_open_children(self, reason: str) -> None:
        """Close as KILLED every child run of the parent still RUNNING (left by a dead driver)."""
        parent = self.parent_run_id
        if parent is not None:
            self._retry(
                lambda: close_open_runs(
                    self.client,
                    open_children(self.client, self.experiment_id, parent),
                    reason=reason,
                )
            )

    @_recorded
    def close_leftovers(self, study_name: str, reason: str) -> None:
        """Close every run of the study a lost sweep left RUNNING: its trial runs as KILLED, a
        parent run other than this sweep's as FAILED (a sweep that never recorded its parent in
        the study is resumed under a new one)."""

        self._retry(
            lambda: close_study_runs(
                self.client,
                self.experiment_id,
                study_name,
                status="FAILED",
                reason=reason,
                keep=self.parent_run_id,
            )
        )

    @_recorded
    def log_parent_artifact(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` on the parent run (once it is open: the driver and
        the hub call the tracker independently, so this may come first)."""
        if self.parent_run_id is None:
            self._parent_files.append((name, data))
        else:
            self._upload(self.parent_run_id, name, data)

    # Trial runs -----------------------------------------------------------------------------

    def start_trial(
        self, key: str, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str:
        """Open a child run for one trial attempt; return its run id."""
        run_tags = {Tag.PARENT_RUN_ID: self.parent_run_id or "", **tags}
        with self.stopwatch.time("create_run"):
            run_id = self._create_run(key, run_name, run_tags)
        self._runs[key] = run_id
        with self._lock:  # written with the first tags or metrics, or by the flusher
            self._params_due[run_id] = (time.monotonic(), _params(params))
        return run_id

    @_recorded
    def log_metrics(
        self, key: str, step: int, metrics: Mapping[str, float], timestamp_ms: int
    ) -> None:
        """Queue metrics at ``step``; they reach MLflow within the flush interval."""
        from mlflow.entities import Metric

        run_id = self._runs[key]
        entries = [
            Metric(name, float(value), timestamp_ms, step) for name, value in metrics.items()
        ]
        with self._lock:
            room = max(self._max_pending - self._queued, 0)
            self._dropped += max(len(entries) - room, 0)
            self._requeue(run_id, entries[:room], at_end=True)
            self._last_step[key] = max(step, self._last_step.get(key, step))

    @_recorded
    def set_tags(self, key: str, tags: Mapping[str, str]) -> None:
        """Set tags on a trial attempt's run."""
        self._write(self._runs[key], tags=_tags(tags))

    @_recorded
    def log_artifact(
        self, key: str, name: str, data: bytes, *, part: int = 0, last: bool = True
    ) -> None:
        """Store ``data`` as artifact ``name`` (may contain folders) of a trial attempt's run;
        a large file comes in ``part``s, stored when the ``last`` one arrives."""
        with self.stopwatch.time("_upload"):
            self._spool.add(self.client, self._runs[key], name, data, part=part, last=last)

    @_recorded
    def end_trial(
        self,
        key: str,
        *,
        state: str,
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        status: str | None = None,
    ) -> None:
        """Log final metrics and tags, then close the run (status: the state's, unless given)."""
        run_id = self._runs[key]
        with self._lock:
            queued = self._take(run_id)
        step = self._last_step.get(key, 0)
        final_tags = {Tag.STATE: state, **tags}
        try:
            self._write(run_id, metrics=[*queued, *_metrics(metrics, step)], tags=_tags(final_tags))
        except Exception as exc:  # close the run anyway; the flusher retries its metrics
            with self._lock:
                self._requeue(run_id, queued)
            self._problems.add(f"end_trial: {one_line(exc, with_type=True)}")
        with self.stopwatch.time("set_terminated"):
            self._retry(lambda: self.client.set_terminated(run_id, status or RUN_STATUS[state]))

    # Delivery -------------------------------------------------------------------------------

    def flush(self) -> list[str]:
        """Write every queued metric now; return (and forget) the errors met so far."""
        try:
            self._flush_all()
        except Exception as exc:
            self._unreachable(exc)
        errors = self._problems.drain()
        with self._lock:
            dropped, self._dropped = self._dropped, 0
            queued = self._queued
        if dropped:
            errors.append(
                f"{dropped} metrics dropped: MLflow at {self._where} did not take them and "
                f"{self._max_pending} were waiting already"
            )
        if queued:
            errors.append(
                f"{queued} metrics not written: MLflow at {self._where} did not take them"
            )
        return errors

    def close(self) -> list[str]:
        """Stop the background flusher after a last flush; return the errors met."""
        self._stop.set()
        self._flusher.join(timeout=5)
        return self.flush()

    def _flush_loop(self, interval: float, params_wait_s: float) -> None:
        while not self._stop.wait(interval):
            if self.outage.lost:  # the sweep stops on it; nothing more can be written
                continue
            try:
                self._flush_all(params_wait_s=params_wait_s)
            except Exception as exc:  # metrics stay queued; the next flush retries them
                self._unreachable(exc)

    def _unreachable(self, exc: Exception) -> None:
        self._problems.add(
            f"MLflow at {self._where} did not take the metrics: {one_line(exc, with_type=True)}"
        )

    def _flush_all(self, params_wait_s: float = 0.0) -> None:
        with self._lock:
            due_since = time.monotonic() - params_wait_s
            waited = [run for run, (since, _) in self._params_due.items() if since <= due_since]
            run_ids = list(dict.fromkeys([*self._pending, *waited]))
        for run_id in run_ids:
            self._flush_run(run_id)

    def _flush_run(self, run_id: str) -> None:
        with self._lock:
            entries = self._take(run_id)
            if not entries and run_id not in self._params_due:
                return
        try:
            self._write(run_id, metrics=entries)
        except Exception:
            with self._lock:
                self._requeue(run_id, entries)
            raise

    def _take(self, run_id: str) -> list[Metric]:
        """Remove and return the run's queued metrics (hold ``_lock``)."""
        entries = self._pending.pop(run_id, [])
        self._queued -= len(entries)
        return entries

    def _requeue(self, run_id: str, entries: list[Metric], *, at_end: bool = False) -> None:
        """Queue ``entries`` for the run, before what is queued (after it with ``at_end``)."""
        if entries:
            queue = self._pending[run_id]
            queue[len(queue) if at_end else 0 : len(queue) if at_end else 0] = entries
            self._queued += len(entries)

    def stats(self) -> dict[str, dict[str, float]]:
        """Seconds and calls of MLflow writes so far."""
        return self.stopwatch.summary()

    def locations(self) -> tuple[str, str | None]:
        """The id of the sweep's MLflow experiment and its parent run's artifact URI (None
        without a parent run, or when the store could not say)."""
        parent = self.parent_run_id
        if parent is None:
            return self.experiment_id, None
        try:
            artifact_uri = self._retry(lambda: self.client.get_run(parent).info.artifact_uri)
        except Exception:  # the report then asks MLflow itself
            artifact_uri = None
        return self.experiment_id, artifact_uri

    def store_status(self) -> list[dict[str, Any]]:
        """``[status]`` while the tracking store is unreachable, else ``[]`` (see
        :meth:`orchestrator._retry.Outage.status`); called in the actor's status group."""
        status = self.outage.status()
        return [] if status is None else [status]

    def _retry(self, call: Callable[[], _T]) -> _T:
        return retrying(call, self.outage)

    def _create_run(self, key: str, run_name: str, tags: Mapping[str, str]) -> str:
        """Create a run of this experiment; return its id. Keyed (Tag.RUN_KEY), so a retry
        after a lost reply finds the run the first try made instead of making a second."""
        run_key = f"{self.id}/{key}"

        def create() -> str:
            run = self.client.create_run(
                self.experiment_id, run_name=run_name, tags={**tags, Tag.RUN_KEY: run_key}
            )
            return str(run.info.run_id)

        def recover() -> Found[str] | None:
            found = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{Tag.RUN_KEY}` = '{run_key}'"
            )
            return Found(str(found[0].info.run_id)) if found else None

        return retrying(create, self.outage, recover=recover)

    @timed
    def _write(
        self,
        run_id: str,
        *,
        metrics: Iterable[Metric] = (),
        params: Iterable[Param] = (),
        tags: Iterable[RunTag] = (),
    ) -> None:
        with self._lock:
            _, due = self._params_due.pop(run_id, (0.0, []))
        metrics, params, tags = list(metrics), [*due, *params], list(tags)
        try:
            self._write_batches(run_id, metrics, params, tags)
        except Exception:
            if due:
                with self._lock:
                    self._params_due.setdefault(run_id, (time.monotonic(), due))
            raise

    def _write_batches(
        self, run_id: str, metrics: list[Metric], params: list[Param], tags: list[RunTag]
    ) -> None:
        from mlflow.utils.validation import (
            MAX_ENTITIES_PER_BATCH,
            MAX_METRICS_PER_BATCH,
            MAX_PARAMS_TAGS_PER_BATCH,
        )

        with self._write_lock:
            while metrics or params or tags:  # one log_batch per MLflow batch limit, not per kind
                cut = MAX_PARAMS_TAGS_PER_BATCH
                batch_params, params = params[:cut], params[cut:]
                batch_tags, tags = tags[:cut], tags[cut:]
                room = MAX_ENTITIES_PER_BATCH - len(batch_params) - len(batch_tags)
                room = min(room, MAX_METRICS_PER_BATCH)
                batch_metrics, metrics = metrics[:room], metrics[room:]
                self._retry(
                    lambda: self.client.log_batch(
                        run_id,
                        metrics=batch_metrics,  # noqa: B023  (called at once)
                        params=batch_params,  # noqa: B023
                        tags=batch_tags,  # noqa: B023
                        synchronous=True,
                    )
                )

    @timed
    def _upload(self, run_id: str, name: str, data: bytes) -> None:
        self._retry(lambda: upload_artifact(self.client, run_id, name, data))


def open_children(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[str]:
    """Ids of the child runs of ``parent_run_id`` still RUNNING."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{Tag.PARENT_RUN_ID}` = '{parent_run_id}' "
        "and attributes.status = 'RUNNING'",
        max_results=50000,
    )
    return [run.info.run_id for run in runs]


def close_study_runs(
    client: MlflowClient,
    experiment_id: str,
    study_name: str,
    *,
    status: str,
    reason: str,
    keep: str | None = None,
) -> None:
    """Close study ``study_name``'s runs still RUNNING but ``keep``: trial runs as KILLED,
    parent runs with ``status``.

    Found by their study tags, not by parent, so the runs of a parent whose id a lost sweep never
    recorded in the study are found too.
    """

    def running(tag: str) -> list[str]:
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{tag}` = '{study_name}' and attributes.status = 'RUNNING'",
            max_results=50000,
        )
        return [run.info.run_id for run in runs if run.info.run_id != keep]

    close_open_runs(client, running(Tag.STUDY_NAME), reason=reason)
    close_open_runs(client, running(Tag.STUDY), status=status, reason=reason)


def close_open_runs(
    client: MlflowClient, run_ids: Iterable[str], *, status: str = "KILLED", reason: str
) -> list[str]:
    """Close every run of ``run_ids`` still RUNNING with ``status``; return the ones closed.

    A trial's run (its trial was re-queued) is marked interrupted in its name.
    """
    from mlflow.entities import RunStatus, RunTag
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    closed = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
            tags = [RunTag(Tag.FAIL_REASON, reason[:MAX_TAG_VAL_LENGTH])]
            if Tag.TRIAL_NUMBER in run.data.tags:
                name = mark_run_name(run.info.run_name, RunName.INTERRUPTED)
                tags.append(RunTag(Tag.RUN_NAME, name))
            client.log_batch(run_id, tags=tags)
            client.set_terminated(run_id, status)
            closed.append(run_id)
    return closed


def _params(params: Mapping[str, Any]) -> list[Param]:
    from mlflow.entities import Param
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    return [Param(str(k), str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]


def _tags(tags: Mapping[str, Any]) -> list[RunTag]:
    from mlflow.entities import RunTag
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    return [RunTag(str(k), str(v)[:MAX_TAG_VAL_LENGTH]) for k, v in tags.items()]


def _metrics(metrics: Mapping[str, float], step: int) -> list[Metric]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(name, float(value), now, step) for name, value in metrics.items()]
