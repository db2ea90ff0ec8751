"""Storing bytes as a file of an MLflow run, whole or in parts."""

from __future__ import annotations

import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["ArtifactSpool", "log_folder", "upload_artifact"]


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


def log_folder(
    tracking_uri: str, run_id: str, folder: Path, artifact_path: str, *, artifact_uri: str | None
) -> None:
    """Store the files under ``folder`` as ``artifact_path/...`` of run ``run_id``.

    ``artifact_uri`` is the run's. When it is a folder of this machine (a path or a ``file:``
    URI: MLflow's local artifact store) the files are copied into it as that store does,
    without importing MLflow (seconds of CPU); otherwise, or when it is None, MLflow's client
    at ``tracking_uri`` uploads them.
    """
    target = _checked(artifact_path)
    local = _local_folder(artifact_uri) if artifact_uri else None
    if local is None:
        from mlflow import MlflowClient

        MlflowClient(tracking_uri).log_artifacts(run_id, str(folder), artifact_path=str(target))
        return
    shutil.copytree(folder, local.joinpath(*target.parts), dirs_exist_ok=True)


def _local_folder(artifact_uri: str) -> Path | None:
    """The folder of an artifact URI that MLflow stores on the local file system, else None."""
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme not in ("", "file") or parsed.netloc:
        return None
    return Path(urllib.request.url2pathname(parsed.path))


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
