"""The names of trial runs in MLflow (the format is :class:`orchestrator.names.RunName`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.names import RunName

__all__ = ["mark_run_name", "state_mark", "trial_run_name"]


def trial_run_name(number: int, attempt: int, params: Mapping[str, Any]) -> str:
    """``#7 solver=anderson memory=5 tol=3.2e-04`` (``#7 retry 1 …`` for attempt 1).

    ``params`` are the sampled ones, in the order to show; the name stops before the param that
    would take it past ``RunName.MAX_CHARS`` and ends in ``…`` then.
    """
    name = f"#{number}" + (f" {RunName.RETRY} {attempt}" if attempt else "")
    for key, value in params.items():
        item = f" {key}={_value(value)}"
        if len(name) + len(item) > RunName.MAX_CHARS:
            return name + " …"
        name += item
    return name


def mark_run_name(name: str, mark: str) -> str:
    """``name`` with ``mark`` after its first word: ``#7 [pruned] x=1.46``."""
    head, _, rest = name.partition(" ")
    return f"{head} {mark} {rest}".rstrip()


def state_mark(state: str, *, diverged: bool = False, interrupted: bool = False) -> str | None:
    """The mark of an attempt that ended in Optuna ``state`` (None for COMPLETE)."""
    if interrupted:
        return RunName.INTERRUPTED
    if state == "PRUNED":
        return RunName.DIVERGED if diverged else RunName.PRUNED
    return RunName.FAILED if state == "FAIL" else None


def _value(value: Any) -> str:
    """Short and exact enough to tell trials apart: 1.46, 3.2e-04, 12, anderson."""
    if isinstance(value, float) and value != 0 and not 1e-3 <= abs(value) < 1e4:
        return f"{value:.1e}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
