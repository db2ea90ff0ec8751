"""``orch status`` and ``orch best``: reading studies back."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.cli import _options as opt
from orchestrator.cli._app import app, err, out
from orchestrator.cli._tables import (
    best_title,
    pack,
    pack_width,
    print_best,
    print_json,
    print_links,
    short,
    ui_command_for,
)
from orchestrator.errors import one_line, redact
from orchestrator.workspace import sqlite_path

if TYPE_CHECKING:
    from orchestrator.results import StatusReader, StudyStatus

_STATE_STYLE = {"running": "green", "done": "blue", "stopped": "yellow"}
RemoteOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ask a cluster's head (http://HEAD:8265), where its study storage lives.",
    ),
]


@app.command("status")
@opt.with_stores
def status_command(
    study: Annotated[str | None, typer.Argument(help="One study (default: all).")] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C (not with --json).")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.2, help="Seconds between refreshes with --watch.")
    ] = 2.0,
    json_: opt.Json = False,
    address: RemoteOpt = None,
    token_file: opt.TokenFile = None,
    *,
    stores: opt.Stores,
) -> None:
    """Studies with trials per state, best values, running trials (node, GPU) and ETA."""
    if watch and json_:
        raise typer.BadParameter(
            "--watch draws a live table; drop it for --json", param_hint="--watch"
        )
    if address:
        if watch:
            raise typer.BadParameter(
                "--watch reads the storage itself; run it on the head, or drop --address",
                param_hint="--watch",
            )
        args = ["status", *([study] if study else []), *["--json"] * json_]
        _on_head(address, token_file, args, stores)
        return
    from orchestrator.results import StatusReader

    where = stores.locations()
    reader = StatusReader(storage_url=where.storage, tracking_uri=where.tracking_uri)
    if json_:
        studies = [s.to_dict() for s in reader.read(study)]
        print_json(
            {
                "storage": redact(where.storage),
                "tracking_uri": redact(where.tracking_uri),
                "studies": studies,
            }
        )
        return
    if not watch:
        out.print(_render(reader.read(study), where.storage))
        return
    _watch(reader, study, where.storage, interval)


@app.command("best")
@opt.with_stores
def best_command(
    study: opt.Study,
    top: Annotated[int, typer.Option(min=1, help="How many best trials (single objective).")] = 1,
    ui_url: Annotated[
        str | None,
        typer.Option(
            help="The MLflow UI's address for the links (default: the tracking server, else "
            "orch ui's http://127.0.0.1:5000)."
        ),
    ] = None,
    json_: opt.Json = False,
    address: RemoteOpt = None,
    token_file: opt.TokenFile = None,
    *,
    stores: opt.Stores,
) -> None:
    """The best trial(s) of a study, or its Pareto front, with links to their MLflow runs."""
    if address:
        args = ["best", study, f"--top={top}", *["--json"] * json_]
        args += [f"--ui-url={ui_url}"] * bool(ui_url)
        _on_head(address, token_file, args, stores)
        return
    from orchestrator.results import best_summary, read_study

    where = stores.locations()
    loaded = read_study(where.storage, study)
    summary = best_summary(loaded, top=top, tracking_uri=where.tracking_uri, ui_url=ui_url)
    if json_:
        print_json(summary)
        return
    trials = summary["best_trials"]
    if summary["pareto_front"]:
        first = summary["metrics"][0]
        trials = sorted(trials, key=lambda t: (t["values"].get(first, 0.0), t["number"]))
    title = best_title(study, summary["metrics"], summary["directions"], len(trials))
    print_best(trials, title=title)
    print_links(
        {**summary, "best_trials": trials}, command=ui_command_for(study, where.tracking_uri)
    )
    for problem in summary["problems"]:
        err.print(problem, style="yellow", markup=False, highlight=False)


def _on_head(address: str, token_file: Path | None, args: list[str], stores: opt.Stores) -> None:
    """Run ``orch ARGS`` on the cluster's head, where its study storage is; print its output."""
    from orchestrator.cluster import connect, run_on_head

    conn = connect(address=address, token_file=token_file)
    sys.stdout.write(run_on_head(conn, args, stores=stores.given()))


def _watch(reader: StatusReader, study: str | None, storage: str, interval: float) -> None:
    """Redraw the status every ``interval`` seconds until Ctrl-C; keep going past read errors."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where SIGINT was ignored
    last: RenderableType = Text("reading…")
    try:
        with Live(last, console=out, auto_refresh=False) as live:
            while True:
                try:
                    last = _render(reader.read(study), storage)
                    view: RenderableType = last
                except Exception as exc:  # e.g. the storage is busy or not created yet
                    failed = f"refresh failed: {one_line(exc, with_type=True)}"
                    view = Group(last, Text(failed, style="red"))
                stamp = datetime.now().strftime("%H:%M:%S")
                live.update(
                    Group(view, Text(f"updated {stamp} · Ctrl-C to stop", style="dim")),
                    refresh=True,
                )
                time.sleep(interval)
    except KeyboardInterrupt:
        return


#: The trial counts ``orch status`` shows, by ``count_states`` key, in this order.
_COUNTS = (
    ("COMPLETE", "complete"),
    ("PRUNED", "pruned"),
    ("FAIL", "failed"),
    ("RUNNING", "running"),
    ("WAITING", "waiting"),
    ("INTERRUPTED", "interrupted"),
)


def _render(statuses: list[StudyStatus], storage: str) -> RenderableType:
    rows = [
        [
            s.study,
            s.state,
            f"{s.finished}/{s.target}" if s.target is not None else str(s.finished),
            _best_text(s),
            _duration(s.eta_s),
        ]
        for s in statuses
    ]
    counts = [
        [f"{s.counts[key]} {name}" for key, name in _COUNTS if s.counts[key]] for s in statuses
    ]
    headers = ["study", "state", "done", "best", "ETA"]
    width = max(pack_width(headers, rows, counts), len("trials"))
    table = Table(title=f"studies in {_shown_storage(storage)}")
    for header in headers[:3]:
        table.add_column(header, no_wrap=True)
    table.add_column("trials", overflow="fold", min_width=len("trials"))
    for header in headers[3:]:
        table.add_column(header, no_wrap=True)
    for row, items in zip(rows, counts, strict=True):
        state = Text(row[1], style=_STATE_STYLE.get(row[1], ""))
        table.add_row(row[0], state, row[2], pack(items, width) or "none yet", *row[3:])
    running = Table(title="running trials")
    for column in ("trial", "elapsed", "node", "mlflow run"):
        running.add_column(column, no_wrap=column != "trial", overflow="fold")
    problems = []
    for s in statuses:
        for t in s.running:
            retry = f" retry {t.attempt}" if t.attempt else ""
            where = (t.node or "") + (f" GPU {t.gpu_ids}" if t.gpu_ids else "")
            running.add_row(
                f"{s.study}:{t.number}{retry}",
                _duration(t.elapsed_s),
                where,
                t.mlflow_run_id or "",
            )
        problems += [f"{s.study}: {p}" for p in s.problems]
    parts: list[RenderableType] = [table]
    if running.row_count:
        parts.append(running)
    parts += [Text(p, style="yellow") for p in problems]
    return Group(*parts)


def _shown_storage(storage: str) -> str:
    """A sqlite storage as its file, relative to the current folder when inside it."""
    database = sqlite_path(storage)
    if database is None:
        return redact(storage)
    with contextlib.suppress(ValueError):
        return str(database.relative_to(Path.cwd()))
    return str(database)


def _best_text(status: StudyStatus) -> str:
    best = status.best_trials
    if not best:
        return ""
    if len(status.directions) > 1:
        return f"pareto front: {len(best)}"
    name, value = next(iter(best[0]["values"].items()))
    return f"{name}={short(value)} (#{best[0]['number']})"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
