"""Where a sweep's time goes: seconds and calls per activity of the driver, hub and tracker."""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["Stopwatch", "timed"]

_F = TypeVar("_F", bound=Callable[..., Any])


class Stopwatch:
    """Accumulates wall seconds and call counts per named activity."""

    def __init__(self) -> None:
        self._seconds: defaultdict[str, float] = defaultdict(float)
        self._calls: defaultdict[str, int] = defaultdict(int)

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        """Count the time spent in the ``with`` block under ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[name] += time.perf_counter() - start
            self._calls[name] += 1

    def summary(self) -> dict[str, dict[str, float]]:
        """``{name: {"seconds": s, "calls": n}}``."""
        return {
            name: {"seconds": round(self._seconds[name], 4), "calls": self._calls[name]}
            for name in sorted(self._seconds)
        }


def timed(method: _F) -> _F:
    """Time a method on its object's ``stopwatch`` under the method's name."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.stopwatch.time(method.__name__):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
