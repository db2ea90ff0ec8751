"""The sqlite tuning the study hub and tracker apply: WAL journal, set on every connection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CODE = """
import sys
import orchestrator._sqlite as tuning
assert "sqlalchemy" not in sys.modules  # the driver imports it before Ray: no SQLAlchemy yet
tuning.tune_sqlite()
import sqlalchemy
engine = sqlalchemy.create_engine("sqlite:///" + sys.argv[1])
with engine.connect() as connection:
    print(connection.exec_driver_sql("PRAGMA journal_mode").scalar())
    print(connection.exec_driver_sql("PRAGMA synchronous").scalar())
"""


def _pragmas(tmp_path: Path, **env: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path / "store.db")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_every_sqlite_connection_gets_the_wal_journal(tmp_path):
    assert _pragmas(tmp_path) == ["wal", "1"]  # synchronous=NORMAL


def test_orch_sqlite_wal_0_keeps_sqlites_defaults(tmp_path):
    assert _pragmas(tmp_path, ORCH_SQLITE_WAL="0") == ["delete", "2"]  # FULL
