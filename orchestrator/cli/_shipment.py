"""What ``--dry-run`` prints: the files a cluster would get, and the command it would run."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from orchestrator.cli._app import out
from orchestrator.errors import redact

if TYPE_CHECKING:
    from orchestrator.cluster import Submission
    from orchestrator.shipping import Shipment

__all__ = ["print_shipment", "print_submission"]

#: How the head's interpreter shows in a dry run's command line (found when submitting).
HEAD_PYTHON = "<head python>"


def print_submission(submission: Submission) -> None:
    """Print the package, command line and environment of an ``orch submit``."""
    extra = submission.extra_files()
    print_shipment(submission.shipment, extra={name: len(data) for name, data in extra.items()})
    _line("job command (on the head, with the Python its Ray runs):")
    _line("  " + submission.entrypoint(HEAD_PYTHON))
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in submission.env_vars().items())
    _line(f"job environment: {env}")
    if submission.packages:
        _line(f"pip packages installed for the job: {' '.join(submission.packages)}")
    for key, url in submission.stores.items():
        flag = "--" + key.replace("_", "-")
        _line(f"{flag} {redact(url)} (in {_stores_file()}, not on the command line)")
    _line("dry run: nothing was sent")


def print_shipment(shipment: Shipment, *, extra: dict[str, int] | None = None) -> None:
    """Print every file a package holds with its size, then what was left out as secret."""
    extra = extra or {}
    total = shipment.size + sum(extra.values())
    count = len(shipment.files) + len(extra)
    _line(f"would upload {shipment.project}: {count} files, {_size(total)} before compression")
    for path, size in [*shipment.files, *extra.items()]:
        _line(f"{_size(size):>10}  {path}")
    if shipment.secrets:
        from orchestrator.shipping import IGNORE_FILE

        _line(f"left out as secret-looking (name one on a !path line in {IGNORE_FILE} to ship it):")
        for path in shipment.secrets:
            _line(f"{'':>10}  {path}")


def _stores_file() -> str:
    from orchestrator.workspace import STORES_FILE

    return STORES_FILE


def _line(text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def _size(size: int) -> str:
    if size >= 2**20:
        return f"{size / 2**20:.1f} MiB"
    return f"{size / 2**10:.1f} KiB" if size >= 2**10 else f"{size} B"
