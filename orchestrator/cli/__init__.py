"""The ``orch`` command line: a thin Typer layer over the Python API.

Command modules import the API inside each command, so ``orch --help`` loads Typer and rich
only. May import every other part of orch.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from orchestrator._exit import exit_without_teardown
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
    """The ``orch`` console script: :func:`main`, then :func:`exit_without_teardown` (``orch
    best``: 4.2 -> 3.4 s median, bench/startup.py's ``orch-best``)."""
    try:
        main()
        status: object = 0
    except SystemExit as exc:
        status = exc.code
    exit_without_teardown(status)
