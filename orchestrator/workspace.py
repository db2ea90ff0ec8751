"""Where a sweep keeps its study and runs when no URL is given: the workspace folder."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import OrchError

__all__ = ["STORES_FILE", "STORES_FILE_ENV", "Locations", "resolve_locations", "sqlite_path"]

WORKSPACE_ENV = "ORCH_WORKSPACE"
STORAGE_ENV = "ORCH_STORAGE"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_WORKSPACE = ".orch"
#: Names a JSON file of ``{"storage": URL, "tracking_uri": URI}``: how ``orch submit`` hands
#: ``--storage``/``--tracking-uri`` to the head without putting them (and any password in them)
#: on the job's command line. The file travels in the job's package.
STORES_FILE_ENV = "ORCH_STORES_FILE"
STORES_FILE = ".orch-stores.json"


@dataclass(frozen=True)
class Locations:
    """The storage and tracking URLs a command uses, and the workspace folder behind defaults."""

    workspace: Path
    storage: str
    tracking_uri: str

    @property
    def artifact_location(self) -> str | None:
        """Artifact root for new experiments in a workspace sqlite store (None: server decides)."""
        if self.tracking_uri == _sqlite(self.workspace / "mlflow.db"):
            return (self.workspace / "artifacts").as_uri()
        return None

    def log_file(self, kind: str, study: str) -> Path:
        """A new log file under the workspace's ``logs/``: ``<kind>-<study>-<time>.log``."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study)
        return self.workspace / "logs" / f"{kind}-{safe}-{stamp}.log"

    def prepare(self) -> None:
        """Create the folders of the sqlite files the URLs name."""
        for url in (self.storage, self.tracking_uri):
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)


def resolve_locations(
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    workspace: str | Path | None = None,
) -> Locations:
    """Flags first, then the stores file ``orch submit`` shipped ($ORCH_STORES_FILE), then
    ORCH_STORAGE / MLFLOW_TRACKING_URI / ORCH_WORKSPACE, then ./.orch.

    Raises:
        OrchError: $ORCH_STORES_FILE names a file that cannot be read.
    """
    folder = Path(workspace or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).resolve()
    shipped = _shipped_stores()
    return Locations(
        workspace=folder,
        storage=storage
        or shipped.get("storage")
        or os.environ.get(STORAGE_ENV)
        or _sqlite(folder / "optuna.db"),
        tracking_uri=tracking_uri
        or shipped.get("tracking_uri")
        or os.environ.get(TRACKING_ENV)
        or _sqlite(folder / "mlflow.db"),
    )


def _shipped_stores() -> dict[str, str]:
    path = os.environ.get(STORES_FILE_ENV)
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise OrchError(f"{path} (${STORES_FILE_ENV}): cannot read the stores: {exc}") from None
    return {key: str(value) for key, value in data.items() if value}


def _sqlite(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other URLs and in-memory databases)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix or url.endswith(":memory:"):
        return None
    return Path(url[len(prefix) :])
