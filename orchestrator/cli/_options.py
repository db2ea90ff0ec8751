"""Arguments and options commands share (``opt.Spec``, ``opt.Json``, ``@opt.with_stores``)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from orchestrator.workspace import Locations

__all__ = [
    "Address",
    "Dashboard",
    "DryRun",
    "Json",
    "Set",
    "Spec",
    "Storage",
    "Stores",
    "Study",
    "TokenFile",
    "Tracking",
    "Workspace",
    "with_stores",
]

Spec = Annotated[
    Path, typer.Argument(help="The sweep spec (YAML).", show_default=False, metavar="SPEC")
]
Study = Annotated[str, typer.Argument(help="The study name.", show_default=False, metavar="STUDY")]
Set = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a spec field: --set fixed.epochs=1 (repeatable).",
        metavar="KEY=VALUE",
    ),
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
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="List every file that would be uploaded (with sizes) and the command that would "
        "run; contact no cluster.",
    ),
]
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


@dataclass(frozen=True)
class Stores:
    """``--storage``, ``--tracking-uri`` and ``--workspace`` as the user gave them."""

    storage: str | None = None
    tracking_uri: str | None = None
    workspace: Path | None = None

    def locations(self) -> Locations:
        """The stores to use here: these options, then the environment, then ``./.orch``."""
        from orchestrator.workspace import resolve_locations

        return resolve_locations(
            storage=self.storage, tracking_uri=self.tracking_uri, workspace=self.workspace
        )

    def given(self) -> dict[str, str]:
        """The store URLs given (``storage``, ``tracking_uri``), for ``orch`` on a cluster's
        head: they travel in a stores file, never on its command line."""
        given = (("storage", self.storage), ("tracking_uri", self.tracking_uri))
        return {key: value for key, value in given if value}


def _store_options(
    storage: Storage = None, tracking_uri: Tracking = None, workspace: Workspace = None
) -> Stores:
    return Stores(storage, tracking_uri, workspace)


def with_stores(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command the store options; it receives them as one ``stores: Stores`` argument."""
    own = inspect.signature(command, eval_str=True).parameters.values()
    added = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(_store_options, eval_str=True).parameters.values()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        given = _store_options(**{p.name: kwargs.pop(p.name) for p in added})
        command(stores=given, **kwargs)

    parameters = [p for p in own if p.name != "stores"] + added
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return wrapper
