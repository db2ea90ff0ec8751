"""``orch export``, ``compare``, ``replay``, ``report``, ``ui``: results to files and browsers."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from orchestrator._net import without_credentials
from orchestrator.cli import _options as opt
from orchestrator.cli._app import app, err, out
from orchestrator.cli._tables import print_json, short
from orchestrator.errors import redact


@app.command("export")
@opt.with_stores
def export_command(
    study: opt.Study,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="File to write: .parquet or .csv (by suffix).",
            show_default=False,
        ),
    ],
    *,
    stores: opt.Stores,
) -> None:
    """One typed row per trial (params, values, times, node, run id); reports in a 2nd file."""
    from orchestrator.results import export_study, read_study

    where = stores.locations()
    loaded = read_study(where.storage, study)
    trials, intermediate = export_study(loaded, path=output, tracking_uri=where.tracking_uri)
    out.print(
        f"wrote {len(loaded.trials)} trials to {trials} and their intermediate values to "
        f"{intermediate}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )


@app.command("compare")
@opt.with_stores
def compare_command(
    refs: Annotated[
        list[str],
        typer.Argument(
            help="MLflow run ids or STUDY:NUMBER trial refs (two or more).", show_default=False
        ),
    ],
    plot: Annotated[
        Path | None,
        typer.Option(help="Write the runs' metric curves (metrics with >1 step) to this PNG."),
    ] = None,
    json_: opt.Json = False,
    *,
    stores: opt.Stores,
) -> None:
    """Params that differ and final metrics of runs side by side; --plot draws their curves."""
    from orchestrator.results import compare_runs, plot_curves

    where = stores.locations()
    found = compare_runs(refs, tracking_uri=where.tracking_uri, storage_url=where.storage)
    written = plot_curves(found, path=plot) if plot is not None else None
    if json_:
        print_json({**found.to_dict(), "plot": str(written) if written else None})
        return
    labels = [r.label for r in found.runs]
    for title, rows in (
        ("params that differ", found.differing),
        ("final metrics", found.metrics),
    ):
        table = Table(title=title)
        table.add_column("")
        for label in labels:
            table.add_column(label, overflow="fold")
        for name, values in rows.items():
            table.add_row(name, *("" if v is None else short(v) for v in values))
        if not rows:
            table.add_row("(none)", *[""] * len(labels))
        out.print(table)
    if found.same:
        same = ", ".join(f"{k}={v}" for k, v in found.same.items())
        out.print(f"same params: {same}", style="dim", markup=False, highlight=False)
    if written is not None:
        out.print(f"curves of {', '.join(found.histories)} written to {written}", markup=False)


@app.command("replay")
@opt.with_stores
def replay_command(
    run_id: Annotated[str, typer.Argument(help="A trial's MLflow run id.", show_default=False)],
    force: Annotated[
        bool, typer.Option("--force", help="Replay even if the code's git commit differs.")
    ] = False,
    project: Annotated[
        Path | None,
        typer.Option(help="Project folder whose code runs (default: around the current dir)."),
    ] = None,
    json_: opt.Json = False,
    *,
    stores: opt.Stores,
) -> None:
    """Re-run a trial with its exact params and code here; log it, and diff its metrics."""
    from orchestrator.results import replay

    where = stores.locations()
    result = replay(
        run_id,
        tracking_uri=where.tracking_uri,
        storage_url=where.storage,
        project=project,
        force=force,
    )
    for warning in result.warnings:
        err.print(
            f"warning: {warning}", style="yellow", soft_wrap=True, markup=False, highlight=False
        )
    if json_:
        print_json(result.to_dict())
    else:
        table = Table(title=f"replay of {run_id}: {result.state}")
        for column in ("metric", "original", "replay", "abs diff", "rel diff"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for d in result.diffs:
            table.add_row(
                d.name, *(_num(v) for v in (d.original, d.replay, d.abs_diff)), _percent(d.rel_diff)
            )
        out.print(table)
        where_text = result.link.url or f"{redact(where.tracking_uri)} ({result.link.path})"
        out.print(
            f"replay run {result.run_id} (tag orch.replay_of={run_id}): {where_text}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        if result.reason:
            err.print(f"{result.state}: {result.reason}", style="red", markup=False)
    if result.state == "FAIL":
        raise typer.Exit(1)


@app.command("report")
@opt.with_stores
def report_command(
    study: opt.Study,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for index.html and plots/ [default: <workspace>/reports/<study>].",
        ),
    ] = None,
    log: Annotated[
        bool, typer.Option("--log", help="Also store it under report/ on the sweep's parent run.")
    ] = False,
    *,
    stores: opt.Stores,
) -> None:
    """Optuna's plots (PNG + interactive HTML) and an index.html summary of a study."""
    from orchestrator.names import StudyAttr
    from orchestrator.results import build_report, log_report, read_study

    where = stores.locations()
    loaded = read_study(where.storage, study)
    folder = output or where.workspace / "reports" / study
    files = build_report(loaded, folder, tracking_uri=where.tracking_uri)
    out.print(f"wrote {len(files)} files; open {files[0]}", markup=False, highlight=False)
    if log:
        parent = loaded.user_attrs.get(StudyAttr.PARENT_RUN_ID)
        if parent is None:
            err.print(f"study {study!r} has no parent run to log to", style="red")
            raise typer.Exit(2)
        log_report(loaded, tracking_uri=where.tracking_uri, parent_run_id=parent)
        out.print(f"logged under report/ on parent run {parent}", markup=False)


@app.command("ui")
@opt.with_stores
def ui_command(
    study: Annotated[
        str | None,
        typer.Argument(
            help="Print this study's runs page (default: every study's).", metavar="STUDY"
        ),
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 5000,
    host: Annotated[
        str, typer.Option(help="Interface to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    optuna_: Annotated[
        bool,
        typer.Option("--optuna", help="Start optuna-dashboard on the study storage instead."),
    ] = False,
    *,
    stores: opt.Stores,
) -> None:
    """Serve the sweeps' MLflow UI (or optuna-dashboard) until Ctrl-C; print the studies' pages."""
    from orchestrator.results import (
        is_server,
        start_mlflow_ui,
        start_optuna_dashboard,
    )

    where = stores.locations()
    if is_server(where.tracking_uri) and not optuna_:
        out.print(
            f"MLflow UI: {redact(where.tracking_uri)} (the tracking store is a server already)",
            markup=False,
        )
        _print_study_pages(
            without_credentials(where.tracking_uri).rstrip("/"), where.tracking_uri, study
        )
        return
    # Handlers first: the server is stopped on Ctrl-C, kill or a closed terminal from the moment
    # it exists (it runs in a session of its own, on a leash that also ends it if orch dies).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    if optuna_:
        server = start_optuna_dashboard(storage_url=where.storage, host=host, port=port)
        store = where.storage
    else:
        if study is not None:  # checked before anything starts
            _study_pages(where.tracking_uri, where.tracking_uri, study)
        server = start_mlflow_ui(tracking_uri=where.tracking_uri, host=host, port=port)
        store = where.tracking_uri
    with server:
        out.print(f"{server.name}: {server.url}", markup=False, highlight=False)
        if not optuna_:
            _print_study_pages(server.url, where.tracking_uri, study)
        out.print(
            f"serving {redact(store)} (pid {server.process.pid}, log {server.log_path}); "
            "Ctrl-C to stop",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        if host not in ("127.0.0.1", "localhost", "::1"):
            err.print(
                f"listening on {host}: anyone who can reach it can read the runs",
                style="yellow",
                markup=False,
            )
        sys.stdout.flush()
        try:
            code = server.wait()
        except KeyboardInterrupt:
            return
    if code != 0:
        err.print(f"{server.name} exited with code {code}", style="red")
        raise typer.Exit(1)


def _study_pages(base_url: str, tracking_uri: str, study: str | None) -> dict[str, str]:
    """The runs page of ``study`` (or of every study) in the UI at ``base_url``.

    Raises:
        OrchError: ``study`` has no experiment in the tracking store.
    """
    from orchestrator.errors import OrchError
    from orchestrator.results import experiment_urls

    pages = experiment_urls(base_url, tracking_uri, study=study)
    if study is not None and not pages:
        raise OrchError(
            f"ui: no study {study!r} in {redact(tracking_uri)}; run a sweep of it first"
        )
    return pages


def _print_study_pages(base_url: str, tracking_uri: str, study: str | None) -> None:
    """Each study's runs page, one line each (whole, so terminals keep the link)."""
    for name, url in _study_pages(base_url, tracking_uri, study).items():
        line = Text(f"  {name}: ")
        line.append(url, style=f"link {url}")
        out.print(line, soft_wrap=True, highlight=False)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.3g}%"
