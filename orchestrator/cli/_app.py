"""The Typer app every command module registers on, and the consoles commands write to."""

from __future__ import annotations

import typer
from rich.console import Console

__all__ = ["app", "err", "out"]

app = typer.Typer(
    name="orch",
    help="Hyperparameter sweeps of deep equilibrium models: Optuna studies on Ray, in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
#: Results (tables, JSON) go to stdout; progress, warnings and errors to stderr.
out = Console()
err = Console(stderr=True)
