"""``orch sweep``, ``orch validate`` and ``orch schema``."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli import _exits as exits
from orchestrator.cli import _options as opt
from orchestrator.cli._app import app, err, out
from orchestrator.cli._tables import (
    best_title,
    print_best,
    print_json,
    print_links,
    ui_command_for,
)
from orchestrator.errors import redact


@app.command("sweep")
@opt.with_stores
def sweep_command(
    spec: opt.Spec,
    trials: Annotated[
        int | None, typer.Option(help="Finished trials the study should hold.")
    ] = None,
    parallel: Annotated[int | None, typer.Option(help="Trials at once.")] = None,
    set_: opt.Set = None,
    address: opt.Address = None,
    resume: Annotated[bool, typer.Option(help="Continue the study of the same name.")] = False,
    json_: opt.Json = False,
    dry_run: opt.DryRun = False,
    *,
    stores: opt.Stores,
) -> None:
    """Run a sweep: an Optuna study whose trials run on Ray, each a child run in MLflow."""
    from orchestrator import SweepInterrupted, SweepLost, SweepResult, sweep
    from orchestrator._report_process import ReportProcess
    from orchestrator.cli._progress import SweepProgress
    from orchestrator.engine import stderr_on_own_descriptor
    from orchestrator.spec import prepare_sweep

    prepared = prepare_sweep(spec, overrides=set_ or [], trials=trials, parallel=parallel)
    if dry_run:
        _print_dry_run(prepared.project, address)
        return
    where = stores.locations()
    ray_log = where.log_file("ray", prepared.spec.name)
    # A submitted job ends with this process: build the report before, not beside it.
    submitted = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
    kwargs: dict[str, Any] = dict(
        storage=stores.storage,
        tracking_uri=stores.tracking_uri,
        workspace=stores.workspace,
        address=address,
        resume=resume,
        log_to_driver=False,  # the job's prints stay in its run's output.log
        ray_log=ray_log,
        report=submitted,
    )
    progress = SweepProgress(prepared.spec, console=err)
    # The report's process imports its libraries while the sweep runs (none for a submitted job)
    # and builds the report while Ray stops and the summary prints; it is waited for below.
    report = (
        None
        if submitted
        else ReportProcess(
            where.log_file("report", prepared.spec.name), tracking_uri=where.tracking_uri
        )
    )
    reporting: list[bool] = []

    def start_report(closed: SweepResult) -> None:
        if report is not None and closed.counts.get("COMPLETE"):
            reporting.append(report.send(closed))

    kwargs["when_closed"] = start_report
    try:
        # Python's stderr on a descriptor of its own: Ray's output goes to ray_log instead.
        with stderr_on_own_descriptor():
            if json_:  # stdout carries the JSON alone: whatever else is printed goes to stderr
                with contextlib.redirect_stdout(sys.stderr):
                    result = sweep(prepared, **kwargs)
            else:
                with progress:
                    result = sweep(prepared, listener=progress, **kwargs)
    except SweepInterrupted as exc:
        _print_result(exc.result, json_=json_)
        err.print(str(exc), style="yellow", markup=False, highlight=False)
        err.print(f"  {redact(_resume_command())}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exits.INTERRUPTED) from None
    except SweepLost as exc:
        if json_:
            print_json(exc.result.to_dict())
        _print_lost(exc, address=address or os.environ.get("RAY_ADDRESS"), ray_log=ray_log)
        raise typer.Exit(exits.RAY_LOST) from None
    except Exception:
        _name_log(ray_log)
        raise
    finally:
        if report is not None:
            report.cancel()  # ends it unless it was sent a job
    _print_result(result, json_=json_)
    if any(reporting) and report is not None and report.wait() != 0:
        # A failed report is a problem of the sweep its exit status shows.
        result.errors.append(f"report: {_last_line(report.log_file)} (log {report.log_file})")
        err.print(f"tracking problem: {redact(result.errors[-1])}", style="red", markup=False)
    if result.errors or progress.retried:
        _name_log(ray_log)
    _exit_with_status(result)


def _exit_with_status(result: Any) -> None:
    """Exit non-zero, with one line saying why, when no trial completed or problems were met."""
    if not result.counts.get("COMPLETE"):
        ended = ", ".join(f"{v} {k.lower()}" for k, v in result.counts.items() if v) or "none"
        first = f"; first failure: {result.first_failure}" if result.first_failure else ""
        err.print(
            f"no trial of {result.study} completed ({ended}){first}",
            style="red",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(exits.NO_TRIAL_COMPLETED)
    if result.errors:
        err.print(
            f"{result.study}: the sweep finished with {len(result.errors)} problem(s) "
            "(above); its trials are recorded",
            style="red",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(exits.SWEEP_PROBLEMS)


def _last_line(log_file: Path) -> str:
    """Why the report failed: the last line its process wrote."""
    from orchestrator.results._report_job import FAILED

    lines = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
    last = lines[-1] if lines else "its process failed"
    return last.removeprefix(FAILED)


def _resume_command() -> str:
    """The command this process runs, as the user typed it, with ``--resume``."""
    words = ["orch", *sys.argv[1:]]
    return shlex.join(words if "--resume" in words else [*words, "--resume"])


def _print_lost(exc: Any, *, address: str | None, ray_log: Path) -> None:
    """A few lines: what was lost, what became of the trials, and how to continue."""
    where = f"the Ray cluster at {address}" if address else "the local Ray"
    counts = exc.result.counts
    finished = sum(counts.get(state, 0) for state in ("COMPLETE", "PRUNED", "FAIL"))
    runs = "their MLflow runs are closed." if not exc.result.errors else "see the problems below."
    lines = [
        f"error: lost {where} mid-sweep: {exc.what}",
        f"{counts.get('WAITING', 0)} trial(s) queued to run again, {finished} finished; {runs}",
        *(f"tracking problem: {problem}" for problem in exc.result.errors),
        f"Ray's log: {ray_log}",
        f"continue with: {_resume_command()}",
    ]
    for line in lines:
        err.print(redact(line), markup=False, highlight=False, soft_wrap=True)


def _name_log(ray_log: Path) -> None:
    """Say where Ray's log is, when something went wrong and it has something to say."""
    if ray_log.exists() and ray_log.stat().st_size:
        err.print(f"Ray's log: {ray_log}", markup=False, highlight=False, soft_wrap=True)


@app.command("validate")
def validate_command(spec: opt.Spec, set_: opt.Set = None) -> None:
    """Check a spec and import its job; exit 2 with one line naming the problem."""
    from orchestrator.spec import prepare_sweep

    checked = prepare_sweep(spec, overrides=set_ or []).spec
    err.print(
        f"{spec}: valid ({checked.name}: {len(checked.space)} parameters, job {checked.job})",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )


@app.command("schema")
def schema_command() -> None:
    """Print the JSON schema of spec files (for editor completion)."""
    from orchestrator.spec import spec_schema

    sys.stdout.write(json.dumps(spec_schema(), indent=2) + "\n")


def _print_dry_run(project: Path, address: str | None) -> None:
    """What ``orch sweep --dry-run`` prints: the package a cluster would get, the command."""
    from orchestrator.cli._shipment import print_shipment
    from orchestrator.shipping import plan

    address = address or os.environ.get("RAY_ADDRESS")
    command = redact(shlex.join(["orch", *(a for a in sys.argv[1:] if a != "--dry-run")]))
    if address:
        print_shipment(plan(project))
        lines = [
            f"command (the driver runs here; trials run on {address} in the uploaded folder):",
            f"  {command}",
        ]
    else:
        lines = [f"runs on a local Ray here: nothing is uploaded. command: {command}"]
    for line in [*lines, "dry run: nothing was started"]:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _print_result(result: Any, *, json_: bool) -> None:
    if json_:
        print_json(result.to_dict())
        return
    from orchestrator.results import add_links

    counts = ", ".join(f"{k.lower()} {v}" for k, v in result.counts.items() if v)
    out.print(f"[bold]{result.study}[/]: {counts}", highlight=False)
    summary = add_links(
        result.to_dict(), tracking_uri=result.tracking_uri, experiment_id=result.experiment_id
    )
    trials = summary["best_trials"]
    print_best(
        trials, title=best_title(result.study, result.metrics, result.directions, len(trials))
    )
    print_links(summary, command=ui_command_for(result.study, result.tracking_uri))
    for problem in [*result.errors, *summary["problems"]]:
        err.print(f"tracking problem: {redact(problem)}", style="red", markup=False)
    for warning in result.warnings:
        err.print(f"warning: {warning}", style="yellow", markup=False)
