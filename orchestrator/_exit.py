"""Ending a process without the interpreter's teardown, once everything it wrote is out."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn

__all__ = ["exit_without_teardown"]


def exit_without_teardown(status: object) -> NoReturn:
    """Exit with ``status`` (as ``sys.exit`` takes it) after the exit handlers ran and the
    standard streams are flushed, skipping the teardown of every loaded module (measured:
    0.1-0.2 s of ``orch sweep``, 0.5-0.6 s of its report's process, 0.9 s of ``orch best``).
    With a non-daemon thread still running, or a message as the status, Python exits as usual.
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if isinstance(status, str) or any(t.is_alive() and not t.daemon for t in others):
        sys.exit(status)  # type: ignore[arg-type]
    atexit._run_exitfuncs()  # logging's flush, temporary folders, Ray's own handlers
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # e.g. a pipe closed by `| head`
            stream.flush()
    os._exit(status if isinstance(status, int) else 0)
