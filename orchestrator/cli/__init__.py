"""The ``orch`` command line: a thin Typer layer over the Python API.

Command modules import the API inside each command, so ``orch --help`` loads Typer and rich
only. May import every other part of orch.
"""

from __future__ import annotations

import sys

import click
import typer

from orchestrator.cli import cluster, reports, results, sweep  # noqa: F401  (registers their commands)
from orchestrator.cli._app import app
from orchestrator.errors import ClusterError, OrchError, StoreUnavailable

__all__ = ["app", "main"]


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
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
