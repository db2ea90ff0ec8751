"""Storing bytes as a file of an MLflow run."""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["upload_artifact"]


def upload_artifact(client: MlflowClient, run_id: str, name: str, data: bytes) -> None:
    """Store ``data`` as artifact ``name`` of run ``run_id``; ``name`` may hold folders.

    Raises:
        ValueError: ``name`` is absolute or climbs out of the run's artifacts (``..``).
    """
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.name:
        raise ValueError(f"artifact name must be a relative path, got {name!r}")
    with tempfile.TemporaryDirectory(prefix="orch-artifact-") as tmp:
        local = Path(tmp) / path.name
        local.write_bytes(data)
        folder = str(path.parent) if str(path.parent) != "." else None
        client.log_artifact(run_id, str(local), artifact_path=folder)
