"""The residual-trace figure: relative residual against iteration, one line per solver."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["plot_traces"]


def plot_traces(traces: dict[str, list[float]], path: Path, *, tol: float, title: str) -> Path:
    """Save a log-scale plot of each solver's residual trace to ``path`` (PNG)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, trace in traces.items():
        ax.semilogy(range(1, len(trace) + 1), trace, label=f"{name} ({len(trace)} evals)")
    ax.axhline(tol, color="grey", linestyle="--", linewidth=1, label=f"tol {tol:g}")
    ax.set_xlabel("function evaluations")
    ax.set_ylabel("relative residual (max over batch)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
