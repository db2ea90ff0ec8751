"""Opening a study's Optuna storage: any SQLAlchemy URL, or ``journal:PATH``."""

from __future__ import annotations

import contextlib
import sqlite3
from importlib import metadata
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from orchestrator.errors import StudyError, one_line
from orchestrator.workspace import sqlite_path

__all__ = ["JOURNAL_PREFIX", "holds_no_study", "journal_path", "open_storage", "study_exists"]

JOURNAL_PREFIX = "journal:"
#: Seconds a connection attempt to a database server may take.
CONNECT_TIMEOUT_S = 10


def open_storage(url: str, *, read_only: bool = False) -> BaseStorage:
    """An Optuna storage for ``url``: any SQLAlchemy URL, or ``journal:PATH`` for a journal file.

    Args:
        url: ``sqlite:///…``, ``postgresql://…``, ``mysql://…`` or ``journal:PATH``.
        read_only: for commands that only read results: never create a file or the tables, so
            a reader cannot race a starting sweep.

    Raises:
        StudyError: the storage cannot be opened, or (``read_only``) its file does not exist.
    """
    try:
        if url.startswith(JOURNAL_PREFIX):
            path = journal_path(url)
            _check_exists(path, url, read_only)
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        file = sqlite_path(url)
        if file is not None:
            _check_exists(file, url, read_only)
            file.parent.mkdir(parents=True, exist_ok=True)
            return RDBStorage(
                url,
                engine_kwargs={"connect_args": {"timeout": 60}},
                skip_table_creation=read_only,
            )
        return RDBStorage(url, engine_kwargs=_server_engine(url), skip_table_creation=read_only)
    except StudyError:
        raise
    except Exception as exc:
        if read_only and _no_tables(url):
            raise StudyError(
                f"no study storage in {url} (the database has no Optuna tables); run a sweep "
                "first, or pass --storage or --workspace"
            ) from None
        raise StudyError(f"storage {url!r}: {_reason(exc)}") from None


def journal_path(url: str) -> Path:
    """The file of a ``journal:PATH`` (or ``journal://PATH``) storage URL."""
    return Path(url[len(JOURNAL_PREFIX) :].removeprefix("//"))


def _reason(exc: BaseException) -> str:
    """What went wrong: Optuna wraps a database's own error (a refused password, a missing
    database, a server that is down) in one generic message; the cause says which."""
    cause = exc.__cause__ or exc.__context__
    return one_line(cause if cause is not None else exc, with_type=True)


def _no_tables(url: str) -> bool:
    """Whether the database at ``url`` answers but holds no Optuna tables (False if it fails)."""
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        try:
            return not sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
    except Exception:
        return False


def holds_no_study(url: str, name: str) -> bool:
    """Whether ``url`` certainly holds no study called ``name``, found without opening it.

    True for a storage file (sqlite or journal) that does not exist yet, and for a sqlite file
    that Optuna of the version installed here set up and whose ``studies`` table lacks the name
    (read with the standard library: no SQLAlchemy, Optuna tables or alembic to import, 0.5 s
    less before a sweep starts). False whenever unsure (a server, a journal file, another
    Optuna's schema, any error): then the caller opens the storage to check.
    """
    if url.startswith(JOURNAL_PREFIX):
        return not journal_path(url).exists()
    file = sqlite_path(url)
    if file is None:
        return False
    if not file.exists():
        return True
    try:
        read_only = f"{file.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(read_only, uri=True)) as db:
            (set_up_by,) = db.execute("SELECT library_version FROM version_info").fetchone()
            if set_up_by != metadata.version("optuna"):
                return False
            found = db.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone()
    except (sqlite3.Error, TypeError, ValueError):
        return False
    return found is None


def _server_engine(url: str) -> dict[str, Any]:
    """Engine settings for a database server: a pooled connection is checked before use (one
    round trip), so the first call after a server restart does not fail on a dead connection;
    connecting gives up after CONNECT_TIMEOUT_S instead of the OS's minutes."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "mysql")):
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kwargs


def _check_exists(path: Path, url: str, read_only: bool) -> None:
    if read_only and not path.exists():
        raise StudyError(
            f"no study storage at {path} ({url}); run a sweep first, or pass --storage or "
            "--workspace"
        )


def study_exists(storage: BaseStorage, name: str) -> bool:
    """Whether ``storage`` holds a study called ``name``."""
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True
