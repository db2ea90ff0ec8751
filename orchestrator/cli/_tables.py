"""How commands print results: JSON for scripts, rich tables for people."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.table import Table
from rich.text import Text

from orchestrator.cli._app import out

__all__ = ["print_best", "print_json", "short"]


def print_json(data: dict[str, Any]) -> None:
    """Write ``data`` as one JSON object on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def short(value: Any) -> str:
    """A compact rendering of a param or metric value."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_best(trials: list[dict[str, Any]], *, title: str | None = None) -> None:
    """A table of trials: one column per objective, params, and the MLflow run (link if any)."""
    if not trials:
        out.print("no completed trial yet")
        return
    table = Table(title=title or ("best trial" if len(trials) == 1 else "best trials"))
    metrics = list(trials[0]["values"])
    for column in ("trial", *metrics, "params"):
        table.add_column(column, overflow="fold")
    table.add_column("mlflow run", no_wrap=True, min_width=32)  # ids stay whole for copying
    for t in trials:
        params = ", ".join(f"{k}={short(v)}" for k, v in t["params"].items())
        link = t.get("mlflow_run") or {}
        run = Text(t["mlflow_run_id"] or "")
        if link.get("url"):  # clickable in terminals that support links
            run.stylize(f"link {link['url']}")
        values = [short(t["values"].get(m)) for m in metrics]
        table.add_row(str(t["number"]), *values, params, run)
    out.print(table)
