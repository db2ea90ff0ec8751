"""``orch status`` and ``orch best``: reading studies back."""

from __future__ import annotations

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
from orchestrator.cli._tables import print_best, print_json, short
from orchestrator.errors import one_line, redact

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
    json_: opt.Json = False,
    address: RemoteOpt = None,
    token_file: opt.TokenFile = None,
    *,
    stores: opt.Stores,
) -> None:
    """The best trial(s) of a study, or its Pareto front, with params and MLflow run links."""
    if address:
        args = ["best", study, f"--top={top}", *["--json"] * json_]
        _on_head(address, token_file, args, stores)
        return
    from orchestrator.results import best_summary, read_study

    where = stores.locations()
    loaded = read_study(where.storage, study)
    summary = best_summary(loaded, top=top, tracking_uri=where.tracking_uri)
    if json_:
        print_json(summary)
        return
    trials = summary["best_trials"]
    if summary["pareto_front"]:
        first = summary["metrics"][0]
        trials = sorted(trials, key=lambda t: (t["values"].get(first, 0.0), t["number"]))
        goals = ", ".join(
            f"{m} ({d})" for m, d in zip(summary["metrics"], summary["directions"], strict=True)
        )
        title = f"Pareto front of {study}: {len(trials)} trials, {goals}"
    else:
        title = f"best of {study} ({summary['metrics'][0]}, {summary['directions'][0]})"
    print_best(trials, title=title)
    links = [t["mlflow_run"] for t in trials if t.get("mlflow_run")]
    if links and links[0]["url"]:
        out.print(f"open: {links[0]['url']}", soft_wrap=True, markup=False, highlight=False)
    elif links:
        out.print(
            f"runs: `orch ui` serves {redact(where.tracking_uri)}; "
            f"open <ui address>/{links[0]['path']}",
            soft_wrap=True,
            markup=False,
            highlight=False,
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


def _render(statuses: list[StudyStatus], storage: str) -> RenderableType:
    table = Table(title=f"studies in {redact(storage)}")
    columns = ("study", "state", "complete", "pruned", "failed", "running", "best", "done", "ETA")
    for column in columns:
        table.add_column(column, justify="right" if column in columns[2:6] else "left")
    running = Table(title="running trials")
    for column in ("study", "trial", "attempt", "elapsed", "node", "GPU", "mlflow run"):
        running.add_column(column)
    problems = []
    for s in statuses:
        counts = s.counts
        table.add_row(
            s.study,
            Text(s.state, style=_STATE_STYLE.get(s.state, "")),
            str(counts["COMPLETE"]),
            str(counts["PRUNED"]),
            str(counts["FAIL"]),
            str(counts["RUNNING"]),
            _best_text(s),
            f"{s.finished}/{s.target}" if s.target is not None else str(s.finished),
            _duration(s.eta_s),
        )
        for t in s.running:
            running.add_row(
                s.study,
                str(t.number),
                "" if t.attempt is None else str(t.attempt),
                _duration(t.elapsed_s),
                t.node or "",
                t.gpu_ids or "",
                t.mlflow_run_id or "",
            )
        problems += [f"{s.study}: {p}" for p in s.problems]
    parts: list[RenderableType] = [table]
    if running.row_count:
        parts.append(running)
    parts += [Text(p, style="yellow") for p in problems]
    return Group(*parts)


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
