"""``orch status`` and ``orch best``: reading studies back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator import results
from orchestrator.cli._common import (
    JsonOpt,
    StorageOpt,
    TrackingOpt,
    WorkspaceOpt,
    app,
    out,
    print_best,
    print_json,
    short,
)
from orchestrator.study import open_storage
from orchestrator.workspace import resolve_locations

RemoteOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ask a cluster's head (http://HEAD:8265), where its study storage lives.",
    ),
]
TokenFileOpt = Annotated[
    Path | None, typer.Option(help="File holding the cluster's Ray token (with --address).")
]


@app.command("status")
def status_command(
    study: Annotated[str | None, typer.Argument(help="One study (default: all).")] = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    workspace: WorkspaceOpt = None,
    json_: JsonOpt = False,
    address: RemoteOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """Studies in the storage with their trials per state and best values."""
    if address:
        args = ["status", *([study] if study else []), *_store_args(storage, tracking_uri, json_)]
        from orchestrator.cli.cluster import query_head

        query_head(address=address, token_file=token_file, args=args)
        return
    where = resolve_locations(storage=storage, tracking_uri=tracking_uri, workspace=workspace)
    store = open_storage(where.storage)
    names = [study] if study else sorted(s.study_name for s in store.get_all_studies())
    summaries = [
        results.study_summary(results.load_study(store, n, storage_url=where.storage))
        for n in names
    ]
    if json_:
        print_json({"storage": where.storage, "studies": summaries})
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
    address: RemoteOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """The best trial(s) of a study, or its Pareto front, with params and MLflow run ids."""
    if address:
        args = ["best", study, f"--top={top}", *_store_args(storage, tracking_uri, json_)]
        from orchestrator.cli.cluster import query_head

        query_head(address=address, token_file=token_file, args=args)
        return
    where = resolve_locations(storage=storage, tracking_uri=tracking_uri, workspace=workspace)
    loaded = results.load_study(open_storage(where.storage), study, storage_url=where.storage)
    summary = results.study_summary(loaded, top=top)
    if json_:
        print_json({"tracking_uri": where.tracking_uri, **summary})
        return
    print_best(summary["best_trials"])


def _store_args(storage: str | None, tracking_uri: str | None, json_: bool) -> list[str]:
    """The options a query on the head takes over from this command."""
    args = [f"--storage={storage}"] * bool(storage) + [f"--tracking-uri={tracking_uri}"] * bool(
        tracking_uri
    )
    return args + ["--json"] * json_


def _best_text(summary: dict[str, Any]) -> str:
    best = summary["best_trials"]
    if not best:
        return ""
    if len(summary["directions"]) > 1:
        return f"pareto front: {len(best)}"
    name, value = next(iter(best[0]["values"].items()))
    return f"{name}={short(value)} (#{best[0]['number']})"
