"""What of a project folder is shipped to a cluster (``orch submit``, ``orch sweep --address``).

The package is the project folder minus:

- what ``.gitignore`` and ``.rayignore`` files exclude (Ray's rules, in every folder; set
  ``RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1`` to ship git-ignored files), and what the project's
  ``.orchignore`` excludes (same syntax, read at the project's root);
- what no cluster needs (:data:`EXCLUDES`: ``.git``, virtualenvs, orch's and MLflow's local
  stores, caches), and links that lead out of the project;
- every secret-looking file (:data:`SECRET_PATTERNS`: ``.env*``, keys, ``.aws/``, ``.ssh/``,
  credentials, ...), unless ``.orchignore`` names it on a ``!path`` line.

orch builds the zip itself from that list, so what ``--dry-run`` shows is what is uploaded.
Imported by Ray workers (through the engine): standard library only at module level.
"""

from __future__ import annotations

import fnmatch
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = [
    "EXCLUDES",
    "IGNORE_FILE",
    "SECRET_PATTERNS",
    "Shipment",
    "is_secret",
    "plan",
    "write_package",
]

#: Left out of every shipped project.
EXCLUDES = (
    ".git",
    ".venv",
    "venv",
    ".orch",
    "mlruns",
    "mlartifacts",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
)
#: Names (of a file, or of a folder on its path) that look like secrets: never shipped unless
#: ``.orchignore`` names the file on a ``!path`` line.
SECRET_PATTERNS = (
    ".env",
    ".env.*",
    ".envrc",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.keytab",
    "id_*",
    "*credentials*",
    ".netrc",
    ".pgpass",
    ".pypirc",
    ".npmrc",
    ".htpasswd",
    ".aws",
    ".ssh",
    ".gnupg",
    ".kube",
    ".docker",
    ".azure",
    "gcloud",
    "secrets.json",
    "secrets.yaml",
    "secrets.yml",
    "secrets.toml",
    "*.tfstate",
    "*.tfstate.backup",
)
#: orch's own ignore file at a project's root: gitignore lines leave files out; ``!path`` lines
#: ship a secret-looking file (or folder) anyway.
IGNORE_FILE = ".orchignore"
_RAY_IGNORE_FILES = (".gitignore", ".rayignore")

Matcher = Callable[[str], bool]


@dataclass(frozen=True)
class Shipment:
    """The files a package holds, by path relative to the project, and what was left out."""

    project: Path
    #: (relative POSIX path, size in bytes), sorted by path.
    files: list[tuple[str, int]] = field(default_factory=list)
    #: Secret-looking files (or folders) left out.
    secrets: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes of the files before compression."""
        return sum(size for _, size in self.files)

    @property
    def paths(self) -> set[str]:
        """The shipped files' relative paths."""
        return {path for path, _ in self.files}


def is_secret(relative: str) -> bool:
    """Whether a project-relative path looks like a secret (its name or a folder on its way)."""
    parts = PurePosixPath(relative).parts
    return any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in SECRET_PATTERNS)


def plan(project: Path) -> Shipment:
    """The files of ``project`` a cluster gets (see the module docstring); reads no content."""
    project = project.resolve()
    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    excluded, wanted = _orchignore(project)
    rules: list[Matcher] = [_patterns(project, EXCLUDES), *excluded]
    files: list[tuple[str, int]] = []
    secrets: list[str] = []

    def walk(folder: Path, rules: list[Matcher]) -> None:
        local = [
            rule
            for name in _RAY_IGNORE_FILES
            if (name != ".gitignore" or include_gitignore)
            and (rule := _ignore_file(folder / name, folder)) is not None
        ]
        rules = [*rules, *local]
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = Path(entry.path)
            relative = path.relative_to(project).as_posix()
            if any(rule(str(path) + ("/" if entry.is_dir() else "")) for rule in rules):
                continue
            if entry.is_symlink() and not path.resolve().is_relative_to(project):
                continue  # a link out of the project ships nothing of the outside
            if is_secret(relative) and not _wanted(relative, wanted, folder=entry.is_dir()):
                secrets.append(relative + ("/" if entry.is_dir() else ""))
                continue
            if entry.is_dir():
                walk(path, rules)
            elif entry.is_file():
                files.append((relative, entry.stat().st_size))

    walk(project, rules)
    return Shipment(project=project, files=files, secrets=secrets)


def write_package(
    shipment: Shipment, archive: Path, *, extra: Mapping[str, bytes] | None = None
) -> tuple[int, int]:
    """Zip the shipment's files (plus ``extra`` files by name) into ``archive``, one file at a
    time (never whole in memory); return (files, bytes of the zip)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for relative, _ in shipment.files:
            bundle.write(shipment.project / relative, relative)
        for name, data in (extra or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o600 << 16  # unpacked user-only where zip modes are kept
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, data)
        count = sum(1 for item in bundle.infolist() if not item.is_dir())
    return count, archive.stat().st_size


def _orchignore(project: Path) -> tuple[list[Matcher], list[str]]:
    """The exclude rule of the project's ``.orchignore`` and the paths its ``!`` lines name."""
    path = project / IGNORE_FILE
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return [], []
    wanted = [
        line[1:].strip().strip("/")
        for line in lines
        if line.startswith("!") and line[1:].strip().strip("/")
    ]
    excludes = [line for line in lines if line.strip() and not line.startswith(("!", "#"))]
    return ([_patterns(project, excludes)] if excludes else []), wanted


def _wanted(relative: str, wanted: list[str], *, folder: bool) -> bool:
    """Whether ``!`` lines ship ``relative``: they name it or a folder holding it (or, for a
    folder, something inside it, which is then shipped alone)."""
    return any(
        relative == path
        or relative.startswith(path + "/")
        or (folder and path.startswith(relative + "/"))
        for path in wanted
    )


def _ignore_file(file: Path, base: Path) -> Matcher | None:
    try:
        lines = file.read_text().splitlines()
    except OSError:
        return None
    return _patterns(base, lines)


def _patterns(base: Path, lines: list[str] | tuple[str, ...]) -> Matcher:
    """A gitignore-style matcher of absolute paths (folders end with ``/``) below ``base``."""
    from ray._private.thirdparty.pathspec.pathspec import PathSpec

    spec = PathSpec.from_lines("gitwildmatch", lines)
    prefix = str(base) + os.sep

    def match(path: str) -> bool:
        return path.startswith(prefix) and spec.match_file(path[len(prefix) :])

    return match
