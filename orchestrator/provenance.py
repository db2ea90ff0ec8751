"""What code and environment a sweep ran: git commit, uncommitted diff, installed packages.

The diff and status cover the files a cluster would get (:mod:`orchestrator.shipping`): the
project folder only, never a secret-looking file or one ignored, and the diff is capped.
"""

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
from orchestrator.shipping import Shipment, is_secret, plan

__all__ = [
    "MAX_DIFF_BYTES",
    "SUBMITTED_FILE",
    "Provenance",
    "collect",
    "git_state",
    "package_version",
]

#: Written into the package ``orch submit`` uploads: the submitting machine's provenance (the
#: copy of the project on the cluster has no .git).
SUBMITTED_FILE = ".orch-provenance.json"
#: Largest ``code/git.diff`` recorded: past it the diff stops at a file, with a note naming
#: the files left out.
MAX_DIFF_BYTES = 2_000_000


@dataclass
class Provenance:
    """Tags for the parent run and files to store beside them."""

    tags: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def to_json(self) -> str:
        """The provenance as JSON (files base64-encoded), as ``orch submit`` ships it."""
        files = {name: base64.b64encode(data).decode() for name, data in self.files.items()}
        return json.dumps({"tags": self.tags, "files": files})


def collect(project: Path, shipment: Shipment | None = None) -> Provenance:
    """Record the project's git state and this interpreter's packages (no environment values).

    The diff and status cover the files of ``shipment`` (default: what would be shipped of
    ``project``), deleted tracked files that are not secret-looking, and nothing else.
    """
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
        changes = _changes(project)
        if changes:
            paths = (shipment or plan(project)).paths
            changes = {
                path: code
                for path, code in changes.items()
                if path in paths or ("D" in code and not is_secret(path))
            }
        found.tags[Tag.GIT_DIRTY] = "true" if changes else "false"
        if changes:
            status = "".join(f"{code} {path}\n" for path, code in sorted(changes.items()))
            found.files["code/git.diff"] = _diff(project, set(changes))
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


def _changes(project: Path) -> dict[str, str]:
    """Changed and untracked files under ``project`` (paths relative to it) and their status."""
    prefix = _git(project, "rev-parse", "--show-prefix", strip=False) or ""
    prefix = prefix.strip()
    listing = _git(
        project,
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--no-renames",
        "--",
        ".",
        strip=False,
    )
    changes: dict[str, str] = {}
    for entry in (listing or "").split("\0"):
        if len(entry) > 3 and entry[3:].startswith(prefix):
            changes[entry[3 + len(prefix) :]] = entry[:2].strip()
    return changes


def _diff(project: Path, paths: set[str]) -> bytes:
    """``git diff HEAD`` of the tracked files among ``paths``: whole files, as many as fit in
    ``MAX_DIFF_BYTES``, the others named in a last line. Read as it comes (never held whole)."""
    names = _git(
        project,
        "diff",
        "HEAD",
        "--name-only",
        "-z",
        "--no-renames",
        "--relative",
        "--",
        ".",
        strip=False,
    )
    order = [name for name in (names or "").split("\0") if name]
    command = ["git", "-C", str(project), "diff", "HEAD", "--binary", "--no-renames", "--relative"]
    kept: list[bytes] = []
    left_out: list[str] = []
    section: list[bytes] | None = None  # the lines of the file being read, None: not kept
    size = index = 0

    def close(section: list[bytes] | None) -> None:
        if section is not None:
            kept.extend(section)

    try:
        with subprocess.Popen([*command, "--", "."], stdout=subprocess.PIPE) as git:
            assert git.stdout is not None
            for line in iter(lambda: git.stdout.readline(1 << 16), b""):  # type: ignore[union-attr]
                if line.startswith(b"diff --git "):
                    close(section)
                    name = order[index]
                    index += 1
                    section = [] if name in paths else None
                if section is None:
                    continue
                if size + len(line) > MAX_DIFF_BYTES:
                    size -= sum(len(part) for part in section)
                    left_out.append(order[index - 1])
                    section = None
                    continue
                section.append(line)
                size += len(line)
            close(section)
    except (OSError, IndexError):
        return b"# orch: git diff could not be read\n"
    if left_out:
        kept.append(
            f"# orch: diff cut at {MAX_DIFF_BYTES:,} bytes; {len(left_out)} changed files "
            f"left out: {', '.join(left_out[:50])}\n".encode()
        )
    return b"".join(kept)


def _git(project: Path, *args: str, strip: bool = True) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(project), *args],
            capture_output=True,
            encoding="utf-8",
            errors="surrogateescape",
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() if strip else done.stdout


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
