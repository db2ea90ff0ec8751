"""How commands print results: JSON for scripts, tables and links for people.

Tables fit the terminal (80 columns included) and pipes: a cell of several items (params,
trial counts) wraps between items, never inside one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from orchestrator.cli._app import out
from orchestrator.errors import redact
from orchestrator.workspace import resolve_locations, sqlite_path

__all__ = [
    "best_title",
    "pack",
    "pack_width",
    "print_best",
    "print_json",
    "print_links",
    "short",
    "ui_command_for",
]

#: What a rich table adds per column (a space each side and a rule) and once (the last rule).
_COLUMN_EDGE = 3


def print_json(data: dict[str, Any]) -> None:
    """Write ``data`` as one JSON object on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def short(value: Any) -> str:
    """A compact rendering of a param or metric value."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def pack(items: Sequence[str], width: int, *, sep: str = ", ") -> str:
    """``items`` joined by ``sep``, on as few lines of at most ``width`` as whole items allow."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + len(sep) + len(item) <= width:
            lines[-1] += sep + item
        else:
            if lines:
                lines[-1] += sep.rstrip()
            lines.append(item)
    return "\n".join(lines)


def pack_width(
    headers: Sequence[str], rows: Sequence[Sequence[str]], items: list[list[str]]
) -> int:
    """The width for a column of packed ``items`` beside ``headers`` columns holding ``rows``.

    What the terminal leaves (80 columns when piped), but at least the widest item.
    """
    used = sum(max(len(h), *(len(r[i]) for r in rows), 0) for i, h in enumerate(headers))
    room = out.width - used - _COLUMN_EDGE * (len(headers) + 1) - 1
    return max(room, *(len(item) for row in items for item in row), 0)


def print_best(trials: list[dict[str, Any]], *, title: str | None = None) -> None:
    """A table of trials: one column per objective, then their params (wrapped by param)."""
    if not trials:
        out.print("no completed trial yet")
        return
    metrics = list(trials[0]["values"])
    rows = [[str(t["number"]), *(short(t["values"].get(m)) for m in metrics)] for t in trials]
    params = [[f"{k}={short(v)}" for k, v in t["params"].items()] for t in trials]
    headers = ["trial", *metrics]
    width = max(pack_width(headers, rows, params), len("params"))
    table = Table(title=title or ("best trial" if len(trials) == 1 else "best trials"))
    for header in headers:
        table.add_column(header, no_wrap=True)
    table.add_column("params", overflow="fold", min_width=len("params"))
    for row, items in zip(rows, params, strict=True):
        table.add_row(*row, pack(items, width))
    out.print(table)


def best_title(study: str, metrics: Sequence[str], directions: Sequence[str], count: int) -> str:
    """``best of quadratic (loss, minimize)``, or ``Pareto front of …: N trials, …``."""
    if len(metrics) == 1:
        return f"best of {study} ({metrics[0]}, {directions[0]})"
    goals = ", ".join(f"{m} ({d})" for m, d in zip(metrics, directions, strict=True))
    return f"Pareto front of {study}: {count} trials, {goals}"


def ui_command_for(study: str, tracking_uri: str) -> str:
    """The ``orch ui`` command that serves the MLflow UI of ``study`` in ``tracking_uri``."""
    words = ["orch", "ui", study]
    database = sqlite_path(tracking_uri)
    if tracking_uri == resolve_locations().tracking_uri:
        pass
    elif database and resolve_locations(workspace=database.parent).tracking_uri == tracking_uri:
        words.append(f"--workspace={database.parent}")
    else:
        words.append(f"--tracking-uri={redact(tracking_uri)}")
    return " ".join(words)


def print_links(summary: dict[str, Any], *, command: str = "orch ui") -> None:
    """Where the summary's best trials are in the MLflow UI: their run pages, compared.

    ``summary`` is :func:`orchestrator.results.add_links`'s; ``command`` is what serves a
    local store's UI (named when nothing serves it yet).
    """
    linked = [t for t in summary["best_trials"] if t.get("mlflow_run")]
    if not linked:
        return
    if summary["ui_served_by"] == "orch ui":
        out.print(f"in the MLflow UI (start it with: {command}):", markup=False, highlight=False)
    else:
        out.print(f"in the MLflow UI at {summary['ui_url']}:", markup=False, highlight=False)
    lines = [(f"#{t['number']}", t["mlflow_run"]["ui_url"]) for t in linked]
    if len(linked) > 1:
        lines.append(("compare", summary["compare_url"]))
    label_width = max(len(label) for label, _ in lines)
    for label, url in lines:  # one line each, never wrapped by us: terminals keep the link whole
        line = Text(f"  {label:<{label_width}}  ")
        line.append(url, style=f"link {url}")
        out.print(line, soft_wrap=True, highlight=False)
