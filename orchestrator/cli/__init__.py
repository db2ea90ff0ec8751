"""The ``orch`` command line: a thin Typer layer over the Python API.

Command modules import the API inside each command, so ``orch --help`` loads Typer and rich
only. May import every other part of orch.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn

import typer

from orchestrator.cli import cluster, reports, results, sweep  # noqa: F401  (registers their commands)
from orchestrator.cli._app import app
from orchestrator.errors import ClusterError, OrchError, StoreUnavailable

__all__ = ["app", "main", "run"]

#: The ``ClickException`` of the click Typer runs on: ``typer._click``'s since Typer 0.29 (which
#: vendors click), ``click``'s before. Usage errors (unknown option, missing argument, bad value)
#: are its subclasses; found through Typer's own ``BadParameter`` so any version works.
USAGE_ERROR_BASE: type[Exception] = next(
    kind for kind in typer.BadParameter.__mro__ if kind.__name__ == "ClickException"
)


def main() -> None:
    """Console entry point: one line on stderr and exit 2 for bad input, 1 for cluster or
    database trouble."""
    from orchestrator._logging import quiet_libraries

    quiet_libraries()
    try:
        code = app(standalone_mode=False)
    except OrchError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1 if isinstance(exc, ClusterError | StoreUnavailable) else 2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except USAGE_ERROR_BASE as exc:  # `Usage: …` and `Error: …` on stderr, exit 2 for usage
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    sys.exit(code if isinstance(code, int) else 0)


def run() -> NoReturn:
    """The ``orch`` console script: :func:`main`, then an exit without the interpreter's
    teardown, which takes 0.2-0.7 s once Ray, Optuna or MLflow are loaded (``orch best``: 3.9
    -> 3.1 s). Exit handlers still run and the standard streams are flushed; with a thread
    still running, or a message as the exit status, Python exits as usual."""
    try:
        main()
        status: object = 0
    except SystemExit as exc:
        status = exc.code
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if isinstance(status, str) or any(t.is_alive() and not t.daemon for t in others):
        sys.exit(status)  # type: ignore[arg-type]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # e.g. a pipe closed by `| head`
            stream.flush()
    os._exit(status if isinstance(status, int) else 0)
