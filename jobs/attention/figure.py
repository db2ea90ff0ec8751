"""Alignment-vs-step figure, one curve per optimiser: ``python -m jobs.attention.figure``.

Writes docs/attention-alignment.png and prints a markdown table of the measured numbers (for
each seed given) for docs/attention.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from jobs.attention.experiment import Outcome, simulate
from jobs.attention.params import Config

#: label -> the run's params: GD and mirror descent at their best step size on a 1/10/100/1000
#: grid for this dataset, NGD and Polyak at their defaults.
RUNS: dict[str, dict[str, Any]] = {
    "GD (lr 100)": {"optimizer": "gd", "lr": 100.0},
    "normalised GD (lr 0.1)": {"optimizer": "ngd", "lr": 0.1},
    "Polyak step (c = 1)": {"optimizer": "polyak", "lr": 1.0},
    "l3 mirror descent (lr 100)": {"optimizer": "mirror", "p": 3.0, "lr": 100.0},
}


def plot(outcomes: dict[str, Outcome], threshold: float, out: Path) -> None:
    """Cosine with the target SVM per step (mirror: also with the l2 SVM, dashed)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, outcome in outcomes.items():
        steps = range(1, len(outcome.alignment) + 1)
        (line,) = ax.plot(steps, outcome.alignment, label=label)
        if "mirror" in label:
            l2_label = f"{label}, vs the l2 SVM"
            ax.plot(steps, outcome.alignment_l2, "--", color=line.get_color(), label=l2_label)
    ax.axhline(threshold, color="grey", lw=0.8, ls=":")
    ax.set(
        xscale="log",
        ylim=(0.6, 1.005),
        xlabel="step + 1",
        ylabel="cosine with the SVM (l3 SVM for mirror)",
        title="Direction of the key-query matrix vs the max-margin attention SVM",
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def table(rows: list[tuple[str, int, dict[str, float]]]) -> str:
    """Markdown table of steps-to-alignment and final cosines per run and seed."""
    lines = [
        "| run | seed | steps_to_alignment | final cos (target) | cos l2 SVM | cos l3 SVM "
        "| steps run |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, seed, f in rows:
        lines.append(
            f"| {label} | {seed} | {f['steps_to_alignment']:.0f} | {f['final_alignment']:.4f} "
            f"| {f['alignment_l2']:.4f} | {f['alignment_lp']:.4f} | {f['steps_run']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/attention-alignment.png"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="first one is plotted")
    args = parser.parse_args(argv)
    rows = []
    for seed in args.seeds:
        outcomes = {}
        for label, params in RUNS.items():
            cfg = Config(steps=args.steps, seed=seed, **params)
            outcomes[label], _ = simulate(cfg)
            rows.append((label, seed, outcomes[label].final))
        if seed == args.seeds[0]:
            plot(outcomes, Config().threshold, args.out)
    print(table(rows))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
