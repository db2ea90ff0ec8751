"""The one root exception of orch, its user-facing subclasses, and their one-line messages."""

from __future__ import annotations

import re

__all__ = [
    "ClusterError",
    "InputError",
    "OrchError",
    "RunError",
    "SpecError",
    "StoreUnavailable",
    "StudyError",
    "one_line",
    "redact",
]

#: ``scheme://user:PASSWORD@``: the password of a URL.
_URL_PASSWORD = re.compile(
    r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s]*?(?=@[^\s@/]*(?:[/\s?#'\"]|$))"
)
#: ``password=VALUE`` in a URL's query or a libpq connection string.
_PASSWORD_FIELD = re.compile(r"(\bpassword=)[^\s&;]*", re.IGNORECASE)
MASK = "***"


class OrchError(Exception):
    """Root of every error orch raises on purpose; its message is one line for the user.

    The message is stored :func:`redact`-ed: a URL in it never shows its password, wherever
    the error is printed, logged or recorded.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class SpecError(OrchError):
    """A spec file, a ``--set`` override or a job reference is invalid."""


class InputError(OrchError):
    """A command-line argument or a file orch reads is invalid (a cluster name that is a path, a
    cluster config with an unknown key, ...)."""


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
    lines = [line.strip() for line in redact(str(exc)).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = f"{type(exc).__name__}: {lines[0]}" if with_type else lines[0]
    return text[:limit]


def redact(text: str) -> str:
    """``text`` with the password of every URL in it (``user:PASSWORD@``, ``password=...``)
    replaced by ``***``: how orch shows URLs and messages that may hold them."""
    return _PASSWORD_FIELD.sub(rf"\g<1>{MASK}", _URL_PASSWORD.sub(rf"\g<1>{MASK}", text))
