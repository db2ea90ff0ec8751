"""Arguments and options several commands share (``opt.Spec``, ``opt.Storage``, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "Address",
    "Dashboard",
    "Json",
    "Set",
    "Spec",
    "Storage",
    "Study",
    "TokenFile",
    "Tracking",
    "Workspace",
]

Spec = Annotated[Path, typer.Argument(help="The sweep spec (YAML).", show_default=False)]
Study = Annotated[str, typer.Argument(help="The study name.", show_default=False)]
Set = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec field: --set fixed.epochs=1 (repeatable)."),
]
Storage = Annotated[
    str | None,
    typer.Option(help="Optuna storage URL (env ORCH_STORAGE; default sqlite in the workspace)."),
]
Tracking = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default sqlite in the workspace)."
    ),
]
Workspace = Annotated[
    Path | None,
    typer.Option(help="Folder for the default stores (env ORCH_WORKSPACE; default ./.orch)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
Address = Annotated[
    str | None,
    typer.Option(help="Ray cluster: ray://HOST:10001, auto or HOST:PORT (env RAY_ADDRESS)."),
]
Dashboard = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="The head's dashboard, http://HEAD:8265 (env RAY_API_SERVER_ADDRESS; default: the "
        "one cluster orch cluster up started here).",
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        help="File holding the cluster's Ray token (default: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
        "or the file orch cluster up wrote)."
    ),
]
