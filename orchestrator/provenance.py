"""What code and environment a sweep ran: git commit, uncommitted diff, installed packages."""

from __future__ import annotations

import base64
import json
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from orchestrator.names import Tag

__all__ = ["SUBMITTED_FILE", "Provenance", "collect", "git_state", "package_version"]

#: Written into the package ``orch submit`` uploads: the submitting machine's provenance (the
#: copy of the project on the cluster has no .git).
SUBMITTED_FILE = ".orch-provenance.json"


@dataclass
class Provenance:
    """Tags for the parent run and files to store beside them."""

    tags: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def to_json(self) -> str:
        """The provenance as JSON (files base64-encoded), as ``orch submit`` ships it."""
        files = {name: base64.b64encode(data).decode() for name, data in self.files.items()}
        return json.dumps({"tags": self.tags, "files": files})


def collect(project: Path) -> Provenance:
    """Record the project's git state and this interpreter's packages (no environment values)."""
    found = Provenance()
    found.tags[Tag.PYTHON] = platform.python_version()
    found.tags[Tag.VERSION] = package_version("orch") or "none"
    for package in ("ray", "optuna", "mlflow", "torch"):
        found.tags[Tag.PACKAGE_VERSION.format(package=package)] = package_version(package) or "none"
    found.tags[Tag.PROJECT] = str(project)
    commit = _git(project, "rev-parse", "HEAD")
    if commit:
        found.tags[Tag.SOURCE_GIT_COMMIT] = commit
        found.tags[Tag.GIT_COMMIT] = commit
        status = _git(project, "status", "--porcelain") or ""
        found.tags[Tag.GIT_DIRTY] = "true" if status.strip() else "false"
        if status.strip():
            diff = _git(project, "diff", "HEAD", "--binary") or ""
            found.files["code/git.diff"] = diff.encode()
            found.files["code/git-status.txt"] = status.encode()
    found.files["env/pip-freeze.txt"] = _freeze().encode()
    found.files["env/python.txt"] = f"{sys.version}\n{sys.executable}\n".encode()
    shipped = project / SUBMITTED_FILE
    if shipped.is_file():
        _add_submitted(found, json.loads(shipped.read_text()))
    return found


def git_state(project: Path) -> tuple[str | None, bool]:
    """The project's HEAD commit (None outside git) and whether its working tree has changes."""
    commit = _git(project, "rev-parse", "HEAD")
    if not commit:
        return None, False
    status = _git(project, "status", "--porcelain") or ""
    return commit, bool(status.strip())


def _add_submitted(found: Provenance, shipped: dict[str, object]) -> None:
    """Take the git state from the submitting machine; keep this machine's environment too."""
    tags = dict(shipped["tags"])  # type: ignore[call-overload]
    for key in (Tag.GIT_COMMIT, Tag.GIT_DIRTY, Tag.SOURCE_GIT_COMMIT):
        if key in tags:
            found.tags[key] = tags[key]
    found.tags[Tag.SUBMITTED_FROM] = tags.get(Tag.PROJECT, "")
    found.tags[Tag.SUBMITTED_PYTHON] = tags.get(Tag.PYTHON, "")
    for name, data in dict(shipped["files"]).items():  # type: ignore[call-overload]
        target = name if name.startswith("code/") else f"submitted/{name}"
        found.files[target] = base64.b64decode(data)


def _git(project: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(project), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _freeze() -> str:
    lines = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def package_version(package: str) -> str | None:
    """The installed version of ``package`` (None when it is not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
