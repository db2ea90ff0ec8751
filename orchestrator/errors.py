"""The one root exception of orch, its user-facing subclasses, and their one-line messages."""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "OrchError",
    "RunError",
    "SpecError",
    "StoreUnavailable",
    "StudyError",
    "one_line",
]


class OrchError(Exception):
    """Root of every error orch raises on purpose; its message is one line for the user."""


class SpecError(OrchError):
    """A spec file, a ``--set`` override or a job reference is invalid."""


class StudyError(OrchError):
    """A study cannot be created, loaded or resumed as asked."""


class ClusterError(OrchError):
    """Ray could not be reached or refused what was asked of it."""


class RunError(OrchError):
    """An MLflow run cannot be found, read or used as asked (compare, replay, links)."""


class StoreUnavailable(OrchError):
    """A sweep's study or tracking database stayed unreachable past its ``store_timeout_s``.

    The sweep stops without closing its trials (that needs the database); ``--resume``
    continues it once the database is back.
    """


def one_line(exc: BaseException, *, limit: int = 300, with_type: bool = False) -> str:
    """The first non-blank line of ``exc``'s message, cut at ``limit`` characters.

    With ``with_type`` it reads ``TypeName: message``; an empty message gives the type's name.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = f"{type(exc).__name__}: {lines[0]}" if with_type else lines[0]
    return text[:limit]
