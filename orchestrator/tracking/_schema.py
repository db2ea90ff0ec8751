"""A new sqlite tracking store as a copy of MLflow's empty schema, instead of its migrations.

MLflow builds a new sqlite store by running every one of its schema migrations in turn: seconds
of CPU, the largest part of a first sweep's start-up in a new workspace. What they leave
depends only on MLflow's version, so the first store built on a machine is kept, empty, in the
user's cache (``$XDG_CACHE_HOME/orch`` or ``~/.cache/orch``), and a new store starts as a copy
of it. MLflow then opens it as usual (checking that its schema is the current one) and writes
its default experiment into it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
from pathlib import Path

from orchestrator.workspace import sqlite_path

__all__ = ["seed_sqlite_store"]

logger = logging.getLogger(__name__)


def seed_sqlite_store(tracking_uri: str) -> None:
    """Create the sqlite file of ``tracking_uri`` from the cached empty schema, if it is new.

    Does nothing for other stores and for files that exist; on any problem it leaves the file
    to MLflow, which then builds it the slow way.
    """
    path = sqlite_path(tracking_uri)
    if path is None or path.exists():
        return
    try:
        template = _template()
        path.parent.mkdir(parents=True, exist_ok=True)
        _copy(template, path)
    except Exception as exc:
        logger.warning("no cached MLflow schema (%s); MLflow builds the store itself", exc)


def _template() -> Path:
    """The cached empty store of this MLflow version, built (by MLflow's migrations) if new."""
    import mlflow
    from mlflow.store.db import utils
    from sqlalchemy import create_engine

    migrations = Path(utils.__file__).parent.parent / "db_migrations" / "versions"
    count = sum(1 for name in os.listdir(migrations) if name.endswith(".py"))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "orch"
    template = cache / f"mlflow-{mlflow.__version__}-{count}.db"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=cache, prefix=".mlflow-", suffix=".db")
    os.close(handle)
    try:
        engine = create_engine(f"sqlite:///{name}")
        try:
            utils._initialize_tables(engine)  # type: ignore[no-untyped-call]
        finally:
            engine.dispose()
        os.replace(name, template)  # whole or not at all, even with two sweeps at once
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    return template


def _copy(template: Path, path: Path) -> None:
    """Copy ``template`` to ``path`` unless another process created ``path`` meanwhile."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with (
            contextlib.closing(sqlite3.connect(template)) as source,
            contextlib.closing(sqlite3.connect(partial)) as target,
        ):
            source.backup(target)
        with contextlib.suppress(FileExistsError):
            os.link(partial, path)  # never replaces a store another sweep has begun to use
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
