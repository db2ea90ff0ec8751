"""Faster sqlite for the study and tracking stores: WAL journal, no fsync per commit.

With ``journal_mode=WAL`` and ``synchronous=NORMAL`` a commit no longer waits for the disk, so
each Optuna or MLflow write costs a fraction of its default price. A process that crashes loses
nothing (the log is in the OS's cache); only a power cut can drop the last commits, and the
database stays consistent. Set ``ORCH_SQLITE_WAL=0`` to keep sqlite's defaults (e.g. on NFS,
where WAL is unsupported).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["tune_sqlite"]

_done = False


def tune_sqlite() -> None:
    """Set the pragmas on every sqlite connection this process opens from now on."""
    global _done
    if _done or os.environ.get("ORCH_SQLITE_WAL", "1") == "0":
        return
    from sqlalchemy import event  # on first use: the driver imports this module before Ray
    from sqlalchemy.engine import Engine

    event.listen(Engine, "connect", _pragmas)
    _done = True


def _pragmas(connection: Any, _record: Any) -> None:
    if not type(connection).__module__.startswith("sqlite3"):
        return
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
