"""``sweep()``: validate a spec, then run its study on Ray with every trial tracked in MLflow.

Imports no MLflow (the tracker actor writes the runs) and opens the study's storage at most
once (to check an existing study before Ray starts; the hub hands back the summary at the end).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import yaml
from ray.exceptions import GetTimeoutError, RayError, RayTaskError

from orchestrator._retry import display_url
from orchestrator.credentials import apply_mlflow_credentials
from orchestrator.engine import (
    Listener,
    RayLost,
    TrialLoop,
    close_abandoned,
    lost_reason,
    ray_session,
    start_actors,
)
from orchestrator.errors import OrchError, StoreUnavailable, StudyError, one_line, redact
from orchestrator.names import Tag, TrialAttr
from orchestrator.provenance import collect
from orchestrator.spec import PreparedSweep, Spec, prepare_sweep
from orchestrator.study import (
    Owner,
    check_study,
    grid_size,
    holds_no_study,
    open_storage,
    study_summary,
)
from orchestrator.workspace import Locations, resolve_locations

__all__ = ["SweepInterrupted", "SweepLost", "SweepResult", "sweep"]

#: Longest wait for the tracker to close the runs of a sweep whose study database is gone.
CLOSE_RUNS_S = 30.0


class SweepInterrupted(OrchError):
    """The sweep was stopped by Ctrl-C; its running trials were closed and queued to re-run."""

    def __init__(self, message: str, result: SweepResult) -> None:
        super().__init__(message)
        self.result = result


class SweepLost(OrchError):
    """Ray (or the sweep's study hub) was lost mid-sweep: the local Ray's processes died or
    the cluster went away. Its running trials were closed and queued to re-run (``--resume``
    continues), and its MLflow runs closed, from the driver."""

    def __init__(self, what: str, result: SweepResult) -> None:
        super().__init__(what)
        self.what = what
        self.result = result


@dataclass
class SweepResult:
    """What a sweep left in its study and tracking store."""

    study: str
    storage: str
    tracking_uri: str
    parent_run_id: str | None
    counts: dict[str, int]
    best_trials: list[dict[str, Any]]
    metrics: list[str]
    directions: list[str]
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    #: Problems of the spec the sweep revealed, e.g. a ``stop_when`` metric no trial reported.
    warnings: list[str] = field(default_factory=list)
    #: Why the first failed trial failed (``trial N: reason``), None when none failed.
    first_failure: str | None = None
    #: Seconds and calls per activity of the driver loop, the study hub and the MLflow tracker.
    timings: dict[str, Any] = field(default_factory=dict)
    #: What was lost mid-sweep (Ray, the study hub); None when the sweep ended through Ray.
    lost: str | None = None
    #: The id of the study's MLflow experiment (None when the sweep could not ask its tracker).
    experiment_id: str | None = None
    #: Where the parent run's artifacts are stored (None when the sweep could not ask).
    artifact_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what ``orch sweep --json`` prints)."""
        return {
            "study": self.study,
            "storage": redact(self.storage),
            "tracking_uri": redact(self.tracking_uri),
            "parent_run_id": self.parent_run_id,
            "experiment_id": self.experiment_id,
            "artifact_uri": redact(self.artifact_uri) if self.artifact_uri else None,
            "counts": self.counts,
            "metrics": self.metrics,
            "directions": self.directions,
            "best_trials": [
                {k: v for k, v in t.items() if k != "user_attrs"} for t in self.best_trials
            ],
            "interrupted": self.interrupted,
            "lost": self.lost,
            "errors": [redact(error) for error in self.errors],
            "warnings": self.warnings,
            "first_failure": self.first_failure,
            "timings": self.timings,
        }


def sweep(
    spec: Spec | str | Path | PreparedSweep,
    *,
    overrides: Sequence[str] = (),
    trials: int | None = None,
    parallel: int | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    address: str | None = None,
    resume: bool = False,
    workspace: str | Path | None = None,
    listener: Listener | None = None,
    log_to_driver: bool = True,
    report: bool = True,
    ray_log: str | Path | None = None,
    when_closed: Callable[[SweepResult], object] | None = None,
) -> SweepResult:
    """Run a sweep until its study holds ``trials`` finished trials.

    Everything is validated before anything is written: a bad spec or job leaves no storage
    file, experiment or run behind.

    Args:
        spec: a spec file, a :class:`Spec`, or a :class:`PreparedSweep` already checked (then
            ``overrides``, ``trials`` and ``parallel`` must not be given).
        overrides: ``--set`` style ``key.path=value`` overrides of spec fields.
        trials, parallel: override the spec's fields of the same name.
        storage, tracking_uri, workspace: where the study and runs go (see
            :func:`orchestrator.workspace.resolve_locations`).
        address: a Ray cluster to run on (default: ``RAY_ADDRESS``, else a local Ray).
        resume: continue the study of the same name.
        listener: told what the sweep does (e.g. a progress bar).
        log_to_driver: let Ray print the workers' output here.
        report: log the finished study's plots and summary page under ``report/`` on its
            parent run before returning (``orch sweep`` does it afterwards, in the background:
            :class:`orchestrator._report_process.ReportProcess`).
        ray_log: a file for Ray's own logging instead of stderr (see
            :func:`orchestrator.engine.ray_output_to`); the workers' output then stays in
            their runs' ``output.log`` and Ray's worker logs.
        when_closed: called with what the study holds once a sweep that ran to its end has
            closed its trials, before Ray stops (``orch sweep`` starts its report there, beside
            Ray's shutdown); not called after Ctrl-C or when Ray or a store was lost.

    Returns:
        What the study and tracking store hold when the sweep ends.

    Raises:
        SpecError: the spec, an override or the job is invalid.
        StudyError: the study exists (without ``resume``), differs, or another orch runs it.
        ClusterError: Ray could not be started or reached.
        StoreUnavailable: the study or tracking database stayed unreachable past the spec's
            ``store_timeout_s``; the sweep stopped, ``resume`` continues it.
        SweepInterrupted: Ctrl-C stopped the sweep; its trials were closed and re-queued.
        SweepLost: Ray (or the study hub) was lost mid-sweep; what it ran was closed from
            here and its trials re-queued.
    """
    listener = listener or Listener()
    if isinstance(spec, PreparedSweep):
        if overrides or trials is not None or parallel is not None:
            raise TypeError("a PreparedSweep already has its overrides, trials and parallel")
        prepared = spec
    else:
        prepared = prepare_sweep(spec, overrides=overrides, trials=trials, parallel=parallel)
    spec, project = prepared.spec, prepared.project
    where = resolve_locations(storage=storage, tracking_uri=tracking_uri, workspace=workspace)
    if not holds_no_study(where.storage, spec.name):  # the study may be there: check it
        listener.phase("opening the study")
        check_study(spec, open_storage(where.storage), resume=resume, storage_url=where.storage)
    where.prepare()
    spec_yaml = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    stop = threading.Event()
    owner = Owner.current()
    address = address or os.environ.get("RAY_ADDRESS") or None
    ended = _Ended()
    with contextlib.ExitStack() as cleanup:
        # Runs last, also when an error ends the sweep: closes what a lost Ray left open.
        cleanup.callback(_close_if_lost, ended, spec, where, owner, listener)
        background = cleanup.enter_context(ThreadPoolExecutor(max_workers=1))
        provenance = background.submit(collect, project)  # git and packages, while Ray starts
        listener.phase(f"connecting to {address}" if address else "starting Ray")
        with ray_session(
            address=address,
            project=project,
            log_to_driver=log_to_driver,
            log_file=Path(ray_log) if ray_log is not None else None,
        ):
            # After Ray started (its processes do not inherit them): the driver's own MLflow
            # calls (the report, closing what a lost hub left open) log in like the tracker's.
            apply_mlflow_credentials(where.tracking_uri)
            listener.phase("starting the study hub and tracker")
            found = provenance.result()
            hub, tracker = start_actors(
                spec=spec,
                spec_yaml=spec_yaml,
                storage_url=where.storage,
                tracking_uri=where.tracking_uri,
                artifact_location=where.artifact_location,
                owner=owner,
                resume=resume,
                parent_tags={**found.tags, Tag.OVERRIDES: " ".join(prepared.overrides)},
            )
            for name, data in found.files.items():
                tracker.log_parent_artifact.remote(name, data)
            loop = TrialLoop(
                spec=spec,
                hub=hub,
                target=min(spec.trials, grid_size(spec) or spec.trials),
                search_path=[str(project)],
                tracking_uri=where.tracking_uri,
                listener=listener,
                stop=stop,
            )
            _run_loop(loop, hub, tracker, listener, ended)
            if when_closed is not None and ended.summary is not None and ended.status == "FINISHED":
                when_closed(_result(spec, where, ended))
            listener.phase("stopping Ray")
    try:
        result = _result(spec, where, ended)
    except StudyError as exc:  # Ray was lost because its database was: say the database
        if ended.lost is None:
            raise
        raise StoreUnavailable(
            f"the study database {display_url(where.storage)} unreachable after {ended.lost} "
            f"({one_line(exc)}); the sweep stopped: continue it with the same command and "
            "--resume once it is back"
        ) from None
    if ended.lost is not None:
        raise SweepLost(ended.lost, result)
    if report and ended.status == "FINISHED":
        result.errors += _log_report(result)
    if result.interrupted:
        raise SweepInterrupted(
            f"sweep {spec.name!r} interrupted; continue it with the same command and --resume",
            result,
        )
    return result


@dataclass
class _Ended:
    """How the trial loop and the closing of the study ended."""

    status: str = "FAILED"
    summary: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    #: What was lost (Ray, the study hub), when the sweep could not close it through Ray.
    lost: str | None = None
    #: The database that stayed unreachable, when one did (its trials then stay RUNNING).
    store_lost: StoreUnavailable | None = None
    #: The study's MLflow experiment and its parent run's artifact URI, from the tracker.
    experiment_id: str | None = None
    artifact_uri: str | None = None


def _run_loop(loop: TrialLoop, hub: Any, tracker: Any, listener: Listener, ended: _Ended) -> None:
    """Run the loop, then close the study through its hub; record in ``ended`` how it went.

    Raises:
        Exception: what stopped the loop, when it was not the loss of Ray (its trials closed).
    """
    started = time.perf_counter()
    # One Ctrl-C stops the loop and closes its trials; a second one, until the end, exits.
    with _stop_on_sigint(loop.stop):
        try:
            outcome = loop.run()
            if outcome.interrupted:
                loop.get(hub.interrupt.remote(outcome.unfinished, "interrupted by user (Ctrl-C)"))
            ended.status = "KILLED" if outcome.interrupted else "FINISHED"
            ended.timings = {"loop_s": round(time.perf_counter() - started, 3)}
            ended.timings["driver"] = loop.stopwatch.summary()
            ended.timings["hub"] = loop.get(hub.stats.remote())
            ended.warnings = loop.get(hub.rule_warnings.remote())
        except Exception as exc:
            if isinstance(exc, StoreUnavailable):  # the study cannot be closed: --resume will
                ended.store_lost = _unwrapped(exc)
                loop.abort()
                raise ended.store_lost from None
            ended.lost = lost_reason(exc)
            if ended.lost is None:  # close what runs, so nothing stays RUNNING; then report
                reason = f"the sweep stopped on an error: {type(exc).__name__}: {exc}"[:1000]
                with contextlib.suppress(RayError, RayLost):
                    loop.get(hub.interrupt.remote(loop.abort(), reason))
                raise
        finally:
            if ended.store_lost is not None:  # its trials stay RUNNING; --resume closes them
                _close_runs_after(tracker, ended.store_lost)
            elif ended.lost is None:
                listener.phase("closing the study")
                try:
                    ended.summary, ended.errors = loop.get(hub.close.remote(ended.status))
                    ended.timings["tracker"] = loop.get(tracker.stats.remote())
                    located = loop.get(tracker.locations.remote())
                    ended.experiment_id, ended.artifact_uri = located
                except StoreUnavailable as exc:
                    ended.store_lost = _unwrapped(exc)
                    _close_runs_after(tracker, ended.store_lost)
                    raise ended.store_lost from None
                except (RayError, RayLost) as exc:
                    ended.lost = lost_reason(exc) or f"the study hub failed: {one_line(exc)}"


def _close_if_lost(
    ended: _Ended, spec: Spec, where: Locations, owner: Owner, listener: Listener
) -> None:
    """When Ray was lost, close from here what its hub and tracker left open."""
    if ended.lost is None:
        return
    listener.phase("closing the trials and runs Ray left open")
    ended.errors += close_abandoned(
        storage_url=where.storage,
        tracking_uri=where.tracking_uri,
        study_name=spec.name,
        owner=owner,
        status="FAILED",
        reason=f"interrupted: {ended.lost}",
    )


def _unwrapped(exc: StoreUnavailable) -> StoreUnavailable:
    """The hub's or tracker's error itself (Ray wraps it with each remote traceback)."""
    cause: BaseException = exc
    while isinstance(cause, RayTaskError):  # a trial's report: worker → hub → database
        cause = cause.cause
    return StoreUnavailable(str(cause))


def _close_runs_after(tracker: Any, lost: StoreUnavailable) -> None:
    """Close the sweep's MLflow runs when the tracking store is still there (best effort: a
    lost tracking store fails at once; one still retrying is given CLOSE_RUNS_S)."""
    reason = f"the sweep stopped: {lost}"
    with contextlib.suppress(RayError, GetTimeoutError):
        tracker.close_open_children.remote(reason)
        ray.get(
            tracker.end_parent.remote(status="FAILED", metrics={}, tags={Tag.FAIL_REASON: reason}),
            timeout=CLOSE_RUNS_S,
        )


def _result(spec: Spec, where: Locations, ended: _Ended) -> SweepResult:
    """What the sweep left: the hub's summary, or the storage's when the hub was lost."""
    import optuna

    summary = ended.summary
    study = None
    if summary is None:
        study = optuna.load_study(
            study_name=spec.name, storage=open_storage(where.storage, read_only=True)
        )
        summary = study_summary(study, top=1)
    first_failure = None
    if summary["counts"].get("FAIL"):  # why, read from the storage (the summary has counts)
        if study is None:
            study = optuna.load_study(
                study_name=spec.name, storage=open_storage(where.storage, read_only=True)
            )
        failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        first = next((t for t in failed if not t.user_attrs.get(TrialAttr.INTERRUPTED)), None)
        if first is not None:
            reason = first.user_attrs.get(TrialAttr.FAIL_REASON, "no reason")
            first_failure = f"trial {first.number}: {reason}"
    return SweepResult(
        study=spec.name,
        storage=where.storage,
        tracking_uri=where.tracking_uri,
        parent_run_id=summary["parent_run_id"],
        counts=summary["counts"],
        best_trials=summary["best_trials"],
        metrics=summary["metrics"],
        directions=summary["directions"],
        interrupted=ended.status == "KILLED",
        errors=ended.errors,
        warnings=ended.warnings,
        first_failure=first_failure,
        timings=ended.timings,
        lost=ended.lost,
        experiment_id=ended.experiment_id,
        artifact_uri=ended.artifact_uri,
    )


def _log_report(result: SweepResult) -> list[str]:
    """Log the study's plots and index.html on the (closed) parent run; never fail the sweep."""
    if result.parent_run_id is None:
        return []
    try:
        import optuna

        from orchestrator.results import log_report

        study = optuna.load_study(
            study_name=result.study, storage=open_storage(result.storage, read_only=True)
        )
        log_report(
            study,
            tracking_uri=result.tracking_uri,
            parent_run_id=result.parent_run_id,
            experiment_id=result.experiment_id,
            artifact_uri=result.artifact_uri,
        )
    except Exception as exc:
        return [f"report: {one_line(exc, with_type=True)}"]
    return []


@contextlib.contextmanager
def _stop_on_sigint(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C asks the loop to stop cleanly; a second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            os._exit(130)
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
