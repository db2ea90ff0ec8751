"""The ``orch`` command line: a thin Typer layer over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from orchestrator import results
from orchestrator.errors import ClusterError, OrchError
from orchestrator.spec import spec_schema
from orchestrator.study import open_storage
from orchestrator.sweep import SweepInterrupted, SweepResult, prepare, sweep
from orchestrator.workspace import resolve_locations

app = typer.Typer(
    name="orch",
    help="Hyperparameter sweeps of deep equilibrium models: Optuna studies on Ray, in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

SpecArg = Annotated[Path, typer.Argument(help="The sweep spec (YAML).", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec field: --set fixed.epochs=1 (repeatable)."),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(help="Optuna storage URL (env ORCH_STORAGE; default sqlite in the workspace)."),
]
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default sqlite in the workspace)."
    ),
]
WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(help="Folder for the default stores (env ORCH_WORKSPACE; default ./.orch)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


@app.command("sweep")
def sweep_command(
    spec: SpecArg,
    trials: Annotated[
        int | None, typer.Option(help="Finished trials the study should hold.")
    ] = None,
    parallel: Annotated[int | None, typer.Option(help="Trials at once.")] = None,
    set_: SetOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster: ray://HOST:10001, auto or HOST:PORT (env RAY_ADDRESS)."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the study of the same name.")] = False,
    workspace: WorkspaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run a sweep: an Optuna study whose trials run on Ray, each a child run in MLflow."""
    from orchestrator.progress import SweepProgress

    checked, _ = prepare(spec, overrides=set_ or [], trials=trials, parallel=parallel)
    kwargs: dict[str, Any] = dict(
        overrides=set_ or [],
        trials=trials,
        parallel=parallel,
        storage=storage,
        tracking_uri=tracking_uri,
        address=address,
        resume=resume,
        workspace=workspace,
    )
    try:
        if json_:
            result = sweep(spec, log_to_driver=False, **kwargs)
        else:
            with SweepProgress(checked, console=err) as progress:
                result = sweep(spec, listener=progress, **kwargs)
    except SweepInterrupted as exc:
        _print_result(exc.result, json_=json_)
        err.print(f"[yellow]{exc}[/]")
        raise typer.Exit(130) from None
    _print_result(result, json_=json_)


@app.command("validate")
def validate_command(spec: SpecArg, set_: SetOpt = None) -> None:
    """Check a spec and import its job; exit 2 with one line naming the problem."""
    checked, _ = prepare(spec, overrides=set_ or [])
    err.print(
        f"{spec}: valid ({checked.name}: {len(checked.space)} parameters, job {checked.job})",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )


@app.command("schema")
def schema_command() -> None:
    """Print the JSON schema of spec files (for editor completion)."""
    sys.stdout.write(json.dumps(spec_schema(), indent=2) + "\n")


@app.command("status")
def status_command(
    study: Annotated[str | None, typer.Argument(help="One study (default: all).")] = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Studies in the storage with their trials per state and best values."""
    where = resolve_locations(storage=storage, tracking_uri=tracking_uri, workspace=workspace)
    store = open_storage(where.storage)
    names = [study] if study else sorted(s.study_name for s in store.get_all_studies())
    summaries = [
        results.study_summary(results.load_study(store, n, storage_url=where.storage))
        for n in names
    ]
    if json_:
        _print_json({"storage": where.storage, "studies": summaries})
        return
    table = Table(title=f"studies in {where.storage}")
    for column in ("study", "complete", "pruned", "failed", "running", "best"):
        table.add_column(column)
    for s in summaries:
        counts = s["counts"]
        table.add_row(
            s["study"],
            str(counts["COMPLETE"]),
            str(counts["PRUNED"]),
            str(counts["FAIL"]),
            str(counts["RUNNING"]),
            _best_text(s),
        )
    out.print(table)


@app.command("best")
def best_command(
    study: Annotated[str, typer.Argument(help="The study name.")],
    top: Annotated[int, typer.Option(help="How many best trials (single objective).")] = 1,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """The best trial(s) of a study, or its Pareto front, with params and MLflow run ids."""
    where = resolve_locations(storage=storage, tracking_uri=tracking_uri, workspace=workspace)
    loaded = results.load_study(open_storage(where.storage), study, storage_url=where.storage)
    summary = results.study_summary(loaded, top=top)
    if json_:
        _print_json({"tracking_uri": where.tracking_uri, **summary})
        return
    _print_best(summary["best_trials"])


def _print_result(result: SweepResult, *, json_: bool) -> None:
    if json_:
        _print_json(result.to_dict())
        return
    counts = ", ".join(f"{k.lower()} {v}" for k, v in result.counts.items() if v)
    out.print(f"[bold]{result.study}[/]: {counts}")
    _print_best(result.best_trials)
    for problem in result.errors:
        err.print(f"[red]tracking problem[/]: {problem}")
    out.print(
        f"runs: [cyan]mlflow ui --backend-store-uri {result.tracking_uri}[/] "
        f"(parent run {result.parent_run_id})"
    )


def _print_best(trials: list[dict[str, Any]]) -> None:
    if not trials:
        out.print("no completed trial yet")
        return
    table = Table(title="best trial" if len(trials) == 1 else "best trials")
    for column in ("trial", "values", "params", "mlflow run"):
        table.add_column(column)
    for t in trials:
        values = ", ".join(
            f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["values"].items()
        )
        params = ", ".join(f"{k}={_short(v)}" for k, v in t["params"].items())
        table.add_row(str(t["number"]), values, params, t["mlflow_run_id"] or "")
    out.print(table)


def _best_text(summary: dict[str, Any]) -> str:
    best = summary["best_trials"]
    if not best:
        return ""
    if len(summary["directions"]) > 1:
        return f"pareto front: {len(best)}"
    name, value = next(iter(best[0]["values"].items()))
    return f"{name}={_short(value)} (#{best[0]['number']})"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def main() -> None:
    """Console entry point: one line on stderr and exit 2 for bad input, 1 for cluster trouble."""
    try:
        app(standalone_mode=False)
    except OrchError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1 if isinstance(exc, ClusterError) else 2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
