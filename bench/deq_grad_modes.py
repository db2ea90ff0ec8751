"""Accuracy vs NFE after training with each gradient mode (implicit, phantom, unrolled).

Trains the default DEQ (MLP cell, spectral norm, Anderson m=5, tol 1e-4) on digits with each
gradient and each seed, then evaluates every checkpoint at test time with Anderson capped at a
growing number of function evaluations (tol 1e-6), so the second table reads as accuracy against
forward NFE. Figures are means over the seeds (± the spread between seeds, max - min).

    python bench/deq_grad_modes.py                  # ~4 min on 2 cores
    python bench/deq_grad_modes.py --epochs 10 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
from statistics import mean

import torch

from jobs.deq import evaluate, train
from orchestrator import local_trial

MODES = {
    "implicit": {"grad": "implicit"},
    "phantom k=1 (one-step)": {"grad": "phantom", "phantom_steps": 1},
    "phantom k=5, damping 0.5": {"grad": "phantom", "phantom_steps": 5, "damping": 0.5},
    "unrolled": {"grad": "unrolled"},
}


def _spread(values: list[float]) -> str:
    return f"{mean(values):.3f} ± {max(values) - min(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--caps", type=int, nargs="+", default=[2, 4, 6, 8, 12, 20])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common = {"epochs": args.epochs, "width": args.width, "lr": args.lr}
    print(
        f"digits, {args.epochs} epochs, width {args.width}, lr {args.lr}, seeds {args.seeds}, "
        f"{args.threads} thread(s)\n"
    )
    print(
        "| gradient | test accuracy | forward NFE | backward NFE | train s/epoch | "
        "spectral radius |"
    )
    print("|---|---|---|---|---|---|")
    curves: dict[str, list[list[dict[str, float]]]] = {}
    for label, extra in MODES.items():
        runs, curves[label] = [], []
        for seed in args.seeds:
            params = {**common, **extra, "seed": seed}
            trial = local_trial(params)
            out = train.run(params, trial)
            times = [m["epoch_time_s"] for _, m in trial.sink.reports]
            runs.append({**out, "epoch_s": sum(times) / len(times)})
            checkpoint = str(trial.sink.artifact_dir / "model.pt")
            curves[label].append(
                [
                    evaluate.run(
                        {"checkpoint": checkpoint, "tol": 1e-6, "max_iter": cap}, local_trial()
                    )
                    for cap in args.caps
                ]
            )
        column = {key: [r[key] for r in runs] for key in runs[0]}
        print(
            f"| {label} | {_spread(column['test_accuracy'])} | "
            f"{mean(column['nfe_forward']):.1f} | {mean(column['nfe_backward']):.1f} | "
            f"{mean(column['epoch_s']):.2f} | {mean(column['spectral_radius']):.3f} |",
            flush=True,
        )
    print(
        "\nTest accuracy when Anderson may use at most N evaluations "
        "(mean over seeds; mean residual in brackets):\n"
    )
    print("| gradient | " + " | ".join(f"N={c}" for c in args.caps) + " |")
    print("|---|" + "---|" * len(args.caps))
    for label, per_seed in curves.items():
        cells = []
        for i in range(len(args.caps)):
            accs = [results[i]["test_accuracy"] for results in per_seed]
            residual = mean(results[i]["residual"] for results in per_seed)
            cells.append(f"{mean(accs):.3f} ({residual:.0e})")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
