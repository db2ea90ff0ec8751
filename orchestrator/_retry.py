"""Riding out a database that is briefly unreachable: transient errors, backoff, a deadline.

The study hub (Optuna storage) and the tracker (MLflow store) make every database call through
:func:`retrying`. An error that means "the server cannot be reached right now" (connection
refused, a connection closed by a restart, the server starting up or shutting down, sqlite
busy) is retried with capped exponential backoff and full jitter, until the call succeeds or the
store has been unreachable for ``deadline_s``: then :class:`~orchestrator.errors.StoreUnavailable`
is raised, and every later call raises it at once. Any other error is raised as it is.

An :class:`Outage` per store records what its calls meet, so the sweep can say it is waiting.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from orchestrator.errors import StoreUnavailable, one_line

__all__ = ["STATUS_GROUP", "Found", "Outage", "display_url", "is_transient", "retrying"]

T = TypeVar("T")

#: PostgreSQL SQLSTATE classes of a server that cannot serve now: connection exceptions,
#: insufficient resources (too many connections), operator intervention (shutdown, start-up).
_TRANSIENT_CLASSES = ("08", "53", "57P")
#: Serialization failure and deadlock: the transaction can simply run again.
_TRANSIENT_STATES = frozenset({"40001", "40P01"})
_SQLITE_BUSY = ("database is locked", "database table is locked")
#: A connection the server refused with a reason (``FATAL:``, no SQLSTATE on the client's
#: error) is transient only for these: the server starting, stopping or full.
_TRANSIENT_FATAL = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "too many clients",
    "terminating connection due to administrator command",
)
_MLFLOW_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
#: The Ray concurrency group in which the hub and tracker actors answer ``store_status`` while
#: a store call blocks their main thread.
STATUS_GROUP = "status"
FIRST_WAIT_S = 0.25
MAX_WAIT_S = 5.0


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means that the database is unreachable for now, not a bad request.

    Walks the exception's causes: Optuna and MLflow wrap SQLAlchemy's errors, which wrap the
    driver's. The first database error found decides; without one, an MLflow error with code
    TEMPORARILY_UNAVAILABLE (what a tracking server answers when its database is down) counts.
    """
    from sqlalchemy import exc as sa

    unavailable = False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa.DBAPIError):
            return _transient_database_error(current)
        if isinstance(current, sa.DisconnectionError):
            return True
        unavailable = unavailable or getattr(current, "error_code", None) == _MLFLOW_UNAVAILABLE
        current = current.__cause__ or current.__context__
    return unavailable


def _why(exc: BaseException) -> str:
    """What the database driver said, shortly: ``Connection refused``, ``terminating connection
    due to administrator command``, ``the database system is starting up``."""
    from sqlalchemy import exc as sa

    current: BaseException | None = exc
    for _ in range(10):
        if current is None:
            break
        if isinstance(current, sa.DBAPIError) and current.orig is not None:
            return one_line(current.orig, limit=200).rsplit(" failed: ", 1)[-1]
        current = current.__cause__ or current.__context__
    return one_line(exc, limit=200)


def _transient_database_error(error: Any) -> bool:
    from sqlalchemy import exc as sa

    if error.connection_invalidated:
        return True
    driver_error = error.orig
    if isinstance(driver_error, sqlite3.Error):
        return any(text in str(driver_error) for text in _SQLITE_BUSY)
    state = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    if state:  # PostgreSQL (psycopg 3, psycopg2): a server-side error with its SQLSTATE
        return state in _TRANSIENT_STATES or str(state).startswith(_TRANSIENT_CLASSES)
    message = str(driver_error)
    if "FATAL:" in message:  # the server answered the connection: a wrong password, no database
        return any(text in message for text in _TRANSIENT_FATAL)
    # Client side (refused, closed, timed out) or another database's driver.
    return isinstance(error, sa.OperationalError | sa.InterfaceError)


def display_url(url: str) -> str:
    """``url`` with its password masked, as messages show a store."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL (journal:PATH): nothing to hide
        return url


@dataclass(frozen=True)
class Found(Generic[T]):
    """What a lost reply turned out to be: the call had taken effect, with this result."""

    value: T


class Outage:
    """Whether one store is reachable: unreachable since when, why, and whether for good.

    Shared by the threads that call the store (the tracker's flusher and its actor thread).
    """

    def __init__(self, store: str, *, deadline_s: float) -> None:
        self.store = store
        self.deadline_s = deadline_s
        self._since: float | None = None
        self._error = ""
        self._lost = False
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> float:
        """Record a transient failure; return how long the store has been unreachable."""
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = now
            self._error = _why(exc)
            return now - self._since

    def reached(self) -> None:
        """Record a call that succeeded: the store is reachable again."""
        if self._since is not None:
            with self._lock:
                self._since = None

    def give_up(self) -> StoreUnavailable:
        """Mark the store gone for good; return the error to raise (now and on every call)."""
        with self._lock:
            self._lost = True
        return self.unavailable()

    def unavailable(self) -> StoreUnavailable:
        """The error that stops the sweep once the store is gone for good."""
        return StoreUnavailable(
            f"{self.store} unreachable for {self.deadline_s:.0f}s ({self._error}); the sweep "
            "stopped: continue it with the same command and --resume once it is back"
        )

    @property
    def lost(self) -> bool:
        """Whether the store stayed unreachable past the deadline."""
        return self._lost

    def status(self) -> dict[str, Any] | None:
        """None while the store is reachable; otherwise what the progress line says about it."""
        with self._lock:
            since, error, lost = self._since, self._error, self._lost
        if lost:
            return {"store": self.store, "lost": str(self.unavailable())}
        if since is None:
            return None
        waited = time.monotonic() - since
        return {
            "store": self.store,
            "lost": None,
            "message": f"waiting for {self.store} ({error}) for {waited:.0f}s; "
            f"giving up after {self.deadline_s:.0f}s",
        }


def retrying(
    call: Callable[[], T],
    outage: Outage,
    *,
    recover: Callable[[], Found[T] | None] | None = None,
) -> T:
    """``call()``, retried while ``outage``'s store is unreachable.

    Args:
        call: one database operation.
        outage: the store's record; its deadline bounds the wait.
        recover: for a call that is not safe to repeat: run before each retry, it tells
            whether the failed attempt took effect after all (a commit whose reply was lost),
            and with what result.

    Raises:
        StoreUnavailable: the store stayed unreachable past the deadline (or was already).
        Exception: whatever ``call`` raised that is not transient.
    """
    if outage.lost:
        raise outage.unavailable()
    attempt = 0
    while True:
        try:
            if attempt and recover is not None:
                found = recover()
                if found is not None:
                    outage.reached()
                    return found.value
            result = call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if outage.failed(exc) > outage.deadline_s:
                raise outage.give_up() from None
            time.sleep(random.uniform(0.0, min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** min(attempt, 10))))
            attempt += 1
            continue
        outage.reached()
        return result
