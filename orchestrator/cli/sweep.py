"""``orch sweep``, ``orch validate`` and ``orch schema``."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated, Any

import typer

from orchestrator.cli import _options as opt
from orchestrator.cli._app import app, err, out
from orchestrator.cli._tables import (
    best_title,
    print_best,
    print_json,
    print_links,
    ui_command_for,
)


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
    from orchestrator import SweepInterrupted, sweep
    from orchestrator.cli._progress import SweepProgress
    from orchestrator.spec import prepare_sweep

    prepared = prepare_sweep(spec, overrides=set_ or [], trials=trials, parallel=parallel)
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
        raise typer.Exit(130) from None
    _print_result(result, json_=json_)


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
        err.print(f"tracking problem: {problem}", style="red", markup=False)
    for warning in result.warnings:
        err.print(f"warning: {warning}", style="yellow", markup=False)
