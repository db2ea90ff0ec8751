"""``holds_no_study``: the check that lets a sweep skip opening an existing storage before Ray."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from orchestrator.study import holds_no_study, open_storage

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A sqlite storage Optuna set up, holding study ``first``."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="first", storage=open_storage(url))
    return url


def test_a_missing_file_or_another_study_holds_no_study(tmp_path, url):
    assert holds_no_study(f"sqlite:///{tmp_path}/missing.db", "first")
    assert holds_no_study(f"journal:{tmp_path}/missing.log", "first")
    assert holds_no_study(url, "second")
    assert not holds_no_study(url, "first")


def test_unsure_means_false(tmp_path, url):
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    assert not holds_no_study(f"sqlite:///{tmp_path}/junk.db", "first")
    sqlite3.connect(tmp_path / "empty.db").close()  # a file without Optuna's tables
    assert not holds_no_study(f"sqlite:///{tmp_path}/empty.db", "first")
    (tmp_path / "journal.log").write_text("")
    assert not holds_no_study(f"journal:{tmp_path}/journal.log", "first")
    assert not holds_no_study("postgresql://user@127.0.0.1:1/db", "first")
    with sqlite3.connect(Path(url.removeprefix("sqlite:///"))) as db:  # another Optuna's schema
        db.execute("UPDATE version_info SET library_version = '3.0.0'")
    assert not holds_no_study(url, "second")


def test_it_reads_without_sqlalchemy_and_changes_nothing(tmp_path, url):
    file = Path(url.removeprefix("sqlite:///"))
    before = file.read_bytes()
    code = (
        "import sys; from orchestrator.study import holds_no_study; "
        f"assert holds_no_study({url!r}, 'second'); "
        "assert 'sqlalchemy' not in sys.modules, 'imported SQLAlchemy'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert file.read_bytes() == before
