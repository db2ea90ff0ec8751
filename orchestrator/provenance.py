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
    """Record the project's git state and this interpreter's packages (no environment values).

    One ``git`` process for a clean tree (two when it has changes, for the diff); the
    packages are read from this interpreter's metadata, not from ``pip``.
    """
    found = Provenance()
    found.tags[Tag.PYTHON] = platform.python_version()
    found.tags[Tag.VERSION] = package_version("orch") or "none"
    for package in ("ray", "optuna", "mlflow", "torch"):
        found.tags[Tag.PACKAGE_VERSION.format(package=package)] = package_version(package) or "none"
    found.tags[Tag.PROJECT] = str(project)
    commit, changes = _status(project)
    if commit:
        found.tags[Tag.SOURCE_GIT_COMMIT] = commit
        found.tags[Tag.GIT_COMMIT] = commit
        found.tags[Tag.GIT_DIRTY] = "true" if changes else "false"
        if changes:
            diff = _git(project, "diff", "HEAD", "--binary") or ""
            found.files["code/git.diff"] = diff.encode()
            found.files["code/git-status.txt"] = changes.encode()
    found.files["env/pip-freeze.txt"] = _freeze().encode()
    found.files["env/python.txt"] = f"{sys.version}\n{sys.executable}\n".encode()
    shipped = project / SUBMITTED_FILE
    if shipped.is_file():
        _add_submitted(found, json.loads(shipped.read_text()))
    return found


def git_state(project: Path) -> tuple[str | None, bool]:
    """The project's HEAD commit (None outside git) and whether its working tree has changes."""
    commit, changes = _status(project)
    return commit, bool(changes)


def _status(project: Path) -> tuple[str | None, str]:
    """HEAD's commit (None outside git or before the first commit) and the changed files as
    ``git status --porcelain`` lists them, from one ``git status`` call."""
    out = _git(project, "status", "--porcelain=v2", "--branch")
    if out is None:
        return None, ""
    commit = None
    changes = []
    for line in out.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.removeprefix("# branch.oid ")
            commit = None if oid == "(initial)" else oid
        elif not line.startswith("#"):
            changes.append(_porcelain_v1(line))
    return commit, "".join(f"{change}\n" for change in changes)


def _porcelain_v1(line: str) -> str:
    """A ``--porcelain=v2`` entry as the shorter v1 line (``XY path``, ``R  old -> new``)."""
    kind = line[:1]
    if kind in "?!":
        return f"{kind}{kind} {line[2:]}"
    fields = line.split(" ", {"1": 8, "2": 9, "u": 10}.get(kind, 1))
    state = fields[1].replace(".", " ")
    if kind == "2":
        new, _, old = fields[-1].partition("\t")
        return f"{state} {old} -> {new}"
    return f"{state} {fields[-1]}"


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
    return done.stdout.rstrip("\n") if done.returncode == 0 else None


def _freeze() -> str:
    """``name==version`` of every installed distribution, like ``pip freeze``.

    Reads only the head of each METADATA file: parsing whole files as email messages (what
    ``Distribution.metadata`` does) costs ten times more.
    """
    lines = set()
    for dist in metadata.distributions():
        head = _metadata_head(dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "")
        if head.get("Name"):
            lines.add(f"{head['Name']}=={head.get('Version')}")
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def _metadata_head(text: str) -> dict[str, str]:
    """The ``Name`` and ``Version`` fields of a core-metadata file (before its first blank line)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line:
            break
        key, _, value = line.partition(": ")
        if key in ("Name", "Version") and key not in found:
            found[key] = value.strip()
    return found


def package_version(package: str) -> str | None:
    """The installed version of ``package`` (None when it is not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
