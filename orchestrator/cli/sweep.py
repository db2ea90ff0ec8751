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
    from orchestrator import SweepInterrupted, sweep
    from orchestrator.cli._progress import SweepProgress
    from orchestrator.spec import prepare_sweep

    prepared = prepare_sweep(spec, overrides=set_ or [], trials=trials, parallel=parallel)
    if dry_run:
        _print_dry_run(prepared.project, address)
        return
    kwargs: dict[str, Any] = dict(
        storage=stores.storage,
        tracking_uri=stores.tracking_uri,
        workspace=stores.workspace,
        address=address,
        resume=resume,
    )
    try:
        if json_:  # stdout carries the JSON alone: whatever else is printed goes to stderr
            with contextlib.redirect_stdout(sys.stderr):
                result = sweep(prepared, log_to_driver=False, **kwargs)
        else:
            with SweepProgress(prepared.spec, console=err) as progress:
                result = sweep(prepared, listener=progress, **kwargs)
    except SweepInterrupted as exc:
        _print_result(exc.result, json_=json_)
        err.print(str(exc), style="yellow", markup=False, highlight=False)
        raise typer.Exit(exits.INTERRUPTED) from None
    _print_result(result, json_=json_)
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
    summary = add_links(result.to_dict(), tracking_uri=result.tracking_uri)
    trials = summary["best_trials"]
    print_best(
        trials, title=best_title(result.study, result.metrics, result.directions, len(trials))
    )
    print_links(summary, command=ui_command_for(result.study, result.tracking_uri))
    for problem in [*result.errors, *summary["problems"]]:
        err.print(f"tracking problem: {redact(problem)}", style="red", markup=False)
    for warning in result.warnings:
        err.print(f"warning: {warning}", style="yellow", markup=False)
