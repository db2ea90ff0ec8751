"""Storing bytes as a file of an MLflow run, whole or in parts."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["ArtifactSpool", "upload_artifact"]


def upload_artifact(client: MlflowClient, run_id: str, name: str, data: bytes) -> None:
    """Store ``data`` as artifact ``name`` of run ``run_id``; ``name`` may hold folders.

    Raises:
        ValueError: ``name`` is absolute or climbs out of the run's artifacts (``..``).
    """
    path = _checked(name)
    with tempfile.TemporaryDirectory(prefix="orch-artifact-") as tmp:
        local = Path(tmp) / path.name
        local.write_bytes(data)
        _upload_file(client, run_id, path, local)


class ArtifactSpool:
    """Artifacts that arrive in parts (a large file, streamed): each part is appended to a
    user-only local file, which is stored on the run when its last part comes."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, str], Path] = {}

    def add(
        self, client: MlflowClient, run_id: str, name: str, data: bytes, *, part: int, last: bool
    ) -> None:
        """Take part ``part`` (0, 1, ...) of artifact ``name``; store it whole after ``last``.

        Raises:
            ValueError: a bad ``name``, or a part that does not follow the one before.
        """
        if part == 0 and last:
            upload_artifact(client, run_id, name, data)
            return
        key = (run_id, name)
        if part == 0:
            self.discard(run_id, name)
            folder = Path(tempfile.mkdtemp(prefix="orch-artifact-"))  # 0700
            self._files[key] = folder / _checked(name).name
            self._files[key].write_bytes(data)
        elif key in self._files:
            with self._files[key].open("ab") as file:
                file.write(data)
        else:
            raise ValueError(f"artifact {name!r}: part {part} came without part 0")
        if last:
            try:
                _upload_file(client, run_id, _checked(name), self._files[key])
            finally:
                self.discard(run_id, name)

    def discard(self, run_id: str, name: str) -> None:
        """Forget the parts of ``name`` received so far."""
        local = self._files.pop((run_id, name), None)
        if local is not None:
            shutil.rmtree(local.parent, ignore_errors=True)


def _checked(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.name:
        raise ValueError(f"artifact name must be a relative path, got {name!r}")
    return path


def _upload_file(client: MlflowClient, run_id: str, path: PurePosixPath, local: Path) -> None:
    folder = str(path.parent) if str(path.parent) != "." else None
    client.log_artifact(run_id, str(local), artifact_path=folder)
