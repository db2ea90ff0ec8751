"""``sweep()``: validate a spec, then run its study on Ray with every trial tracked in MLflow."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import yaml
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

from orchestrator.engine import Listener, TrialLoop, close_abandoned, ray_session, start_actors
from orchestrator.errors import OrchError, StoreUnavailable
from orchestrator.names import Tag
from orchestrator.provenance import collect
from orchestrator.results import study_summary
from orchestrator.spec import PreparedSweep, Spec, prepare_sweep
from orchestrator.study import Owner, check_study, grid_size, open_storage
from orchestrator.workspace import Locations, resolve_locations

__all__ = ["SweepInterrupted", "SweepResult", "sweep"]

#: Longest wait for the tracker to close the runs of a sweep whose study database is gone.
CLOSE_RUNS_S = 30.0


class SweepInterrupted(OrchError):
    """The sweep was stopped by Ctrl-C; its running trials were closed and queued to re-run."""

    def __init__(self, message: str, result: SweepResult) -> None:
        super().__init__(message)
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
    #: Seconds and calls per activity of the driver loop, the study hub and the MLflow tracker.
    timings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what ``orch sweep --json`` prints)."""
        return {
            "study": self.study,
            "storage": self.storage,
            "tracking_uri": self.tracking_uri,
            "parent_run_id": self.parent_run_id,
            "counts": self.counts,
            "metrics": self.metrics,
            "directions": self.directions,
            "best_trials": [
                {k: v for k, v in t.items() if k != "user_attrs"} for t in self.best_trials
            ],
            "interrupted": self.interrupted,
            "errors": self.errors,
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
        listener: told what the trial loop does (e.g. a progress bar).
        log_to_driver: let Ray print the workers' output here.
        report: log the finished study's plots and summary page under ``report/`` on its
            parent run.

    Returns:
        What the study and tracking store hold when the sweep ends.

    Raises:
        SpecError: the spec, an override or the job is invalid.
        StudyError: the study exists (without ``resume``), differs, or another orch runs it.
        ClusterError: Ray could not be started or reached.
        StoreUnavailable: the study or tracking database stayed unreachable past the spec's
            ``store_timeout_s``; the sweep stopped, ``resume`` continues it.
        SweepInterrupted: Ctrl-C stopped the sweep; its trials were closed and re-queued.
    """
    if isinstance(spec, PreparedSweep):
        if overrides or trials is not None or parallel is not None:
            raise TypeError("a PreparedSweep already has its overrides, trials and parallel")
        prepared = spec
    else:
        prepared = prepare_sweep(spec, overrides=overrides, trials=trials, parallel=parallel)
    spec, project = prepared.spec, prepared.project
    where = resolve_locations(storage=storage, tracking_uri=tracking_uri, workspace=workspace)
    where.prepare()
    check_study(spec, open_storage(where.storage), resume=resume, storage_url=where.storage)
    spec_yaml = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    stop = threading.Event()
    owner = Owner.current()
    found = collect(project)
    with ray_session(address=address, project=project, log_to_driver=log_to_driver):
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
            listener=listener or Listener(),
            stop=stop,
        )
        status = "FAILED"
        timings: dict[str, Any] = {}
        started = time.perf_counter()
        # One Ctrl-C stops the loop and closes its trials; a second one, until the end, exits.
        lost: StoreUnavailable | None = None
        with _stop_on_sigint(stop):
            try:
                outcome = loop.run()
                if outcome.interrupted:
                    ray.get(
                        hub.interrupt.remote(outcome.unfinished, "interrupted by user (Ctrl-C)")
                    )
                status = "KILLED" if outcome.interrupted else "FINISHED"
                timings = {"loop_s": round(time.perf_counter() - started, 3)}
                timings["driver"] = loop.stopwatch.summary()
                timings["hub"] = ray.get(hub.stats.remote())
            except StoreUnavailable as exc:  # the study cannot be closed: --resume will
                lost = _unwrapped(exc)
                loop.abort()
                raise lost from None
            except Exception as exc:  # close what runs, so nothing stays RUNNING, then report
                reason = f"the sweep stopped on an error: {type(exc).__name__}: {exc}"[:1000]
                with contextlib.suppress(RayActorError):
                    ray.get(hub.interrupt.remote(loop.abort(), reason))
                raise
            finally:
                if lost is not None:  # its trials stay RUNNING in the study; --resume closes them
                    _close_runs_after(tracker, lost)
                else:
                    try:
                        errors = ray.get(hub.close.remote(status))
                        timings["tracker"] = ray.get(tracker.stats.remote())
                    except RayActorError as exc:
                        reason = f"the study hub was lost ({type(exc).__name__})"
                        close_abandoned(
                            storage_url=where.storage,
                            tracking_uri=where.tracking_uri,
                            study_name=spec.name,
                            owner=owner,
                            status="FAILED",
                            reason=reason,
                        )
                        errors = [
                            f"{reason}; its running trials were re-queued and their runs closed"
                        ]
    result = _result(spec, where, interrupted=status == "KILLED", errors=errors)
    result.timings = timings
    if report and status == "FINISHED":
        result.errors += _log_report(spec.name, where, result.parent_run_id)
    if result.interrupted:
        raise SweepInterrupted(
            f"sweep {spec.name!r} interrupted; continue it with the same command and --resume",
            result,
        )
    return result


def _unwrapped(exc: StoreUnavailable) -> StoreUnavailable:
    """The hub's or tracker's error itself (Ray wraps it with the remote traceback)."""
    cause = exc.cause if isinstance(exc, RayTaskError) else exc
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


def _result(spec: Spec, where: Locations, *, interrupted: bool, errors: list[str]) -> SweepResult:
    import optuna

    study = optuna.load_study(study_name=spec.name, storage=open_storage(where.storage))
    summary = study_summary(study, top=1)
    return SweepResult(
        study=spec.name,
        storage=where.storage,
        tracking_uri=where.tracking_uri,
        parent_run_id=summary["parent_run_id"],
        counts=summary["counts"],
        best_trials=summary["best_trials"],
        metrics=summary["metrics"],
        directions=summary["directions"],
        interrupted=interrupted,
        errors=errors,
    )


def _log_report(name: str, where: Locations, parent_run_id: str | None) -> list[str]:
    """Log the study's plots and index.html on the (closed) parent run; never fail the sweep."""
    if parent_run_id is None:
        return []
    try:
        import optuna
        from mlflow import MlflowClient

        from orchestrator.results import log_report

        study = optuna.load_study(
            study_name=name, storage=open_storage(where.storage, read_only=True)
        )
        log_report(study, client=MlflowClient(where.tracking_uri), parent_run_id=parent_run_id)
    except Exception as exc:
        return [f"report: {type(exc).__name__}: {exc}".splitlines()[0]]
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
