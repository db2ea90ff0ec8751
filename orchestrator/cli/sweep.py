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

from orchestrator.cli import _options as opt
from orchestrator.cli._app import app, err, out
from orchestrator.cli._tables import print_best, print_json


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
    *,
    stores: opt.Stores,
) -> None:
    """Run a sweep: an Optuna study whose trials run on Ray, each a child run in MLflow."""
    from orchestrator import SweepInterrupted, SweepLost, sweep
    from orchestrator._sweep import report_in_background
    from orchestrator.cli._progress import SweepProgress
    from orchestrator.engine import stderr_on_own_descriptor
    from orchestrator.spec import prepare_sweep

    prepared = prepare_sweep(spec, overrides=set_ or [], trials=trials, parallel=parallel)
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
        err.print(f"  {_resume_command()}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except SweepLost as exc:
        if json_:
            print_json(exc.result.to_dict())
        _print_lost(exc, address=address or os.environ.get("RAY_ADDRESS"), ray_log=ray_log)
        raise typer.Exit(RAY_LOST_EXIT) from None
    except Exception:
        _name_log(ray_log)
        raise
    _print_result(result, json_=json_)
    if result.errors or progress.retried:
        _name_log(ray_log)
    if not submitted:
        report_log = where.log_file("report", result.study)
        report_in_background(result, report_log)
        if not json_:
            err.print(
                f"report: being logged on the parent run in the background (log {report_log})",
                style="dim",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


#: ``orch sweep``'s exit status when Ray was lost mid-sweep (2 is bad input, 130 Ctrl-C).
RAY_LOST_EXIT = 3


def _resume_command() -> str:
    """The command this process runs, as the user typed it, with ``--resume``."""
    words = ["orch", *sys.argv[1:]]
    return shlex.join(words if "--resume" in words else [*words, "--resume"])


def _print_lost(exc: Any, *, address: str | None, ray_log: Path) -> None:
    """A few lines: what was lost, what became of the trials, and how to continue."""
    where = f"the Ray cluster at {address}" if address else "the local Ray"
    counts = exc.result.counts
    finished = sum(counts.get(state, 0) for state in ("COMPLETE", "PRUNED", "FAIL"))
    lines = [
        f"error: lost {where} mid-sweep: {exc.what}",
        f"{counts.get('WAITING', 0)} trial(s) queued to run again, {finished} finished; "
        "their MLflow runs are closed.",
        f"Ray's log: {ray_log}",
        f"continue with: {_resume_command()}",
    ]
    for line in lines:
        err.print(line, markup=False, highlight=False, soft_wrap=True)


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


def _print_result(result: Any, *, json_: bool) -> None:
    if json_:
        print_json(result.to_dict())
        return
    counts = ", ".join(f"{k.lower()} {v}" for k, v in result.counts.items() if v)
    out.print(f"[bold]{result.study}[/]: {counts}")
    print_best(result.best_trials)
    for problem in result.errors:
        err.print(f"tracking problem: {problem}", style="red", markup=False)
    out.print(
        f"runs: mlflow ui --backend-store-uri {result.tracking_uri} "
        f"(parent run {result.parent_run_id})",
        soft_wrap=True,
        markup=False,
    )
