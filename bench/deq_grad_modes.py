"""Accuracy vs NFE after training with each gradient mode (implicit, phantom, unrolled).

Trains the default DEQ (MLP cell, spectral norm, Anderson m=5, tol 1e-4) on digits with each
gradient, then evaluates every checkpoint at test time with Anderson capped at a growing number
of function evaluations (tol 1e-6), so the table reads as accuracy against forward NFE.

    python bench/deq_grad_modes.py                  # ~3 min on 2 cores
    python bench/deq_grad_modes.py --epochs 10 --width 128
"""

from __future__ import annotations

import argparse

import torch

from jobs.deq import evaluate, train
from orchestrator import local_trial

MODES = {
    "implicit": {"grad": "implicit"},
    "phantom k=1 (one-step)": {"grad": "phantom", "phantom_steps": 1},
    "phantom k=5, damping 0.5": {"grad": "phantom", "phantom_steps": 5, "damping": 0.5},
    "unrolled": {"grad": "unrolled"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--caps", type=int, nargs="+", default=[2, 4, 6, 8, 12, 20, 40])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common = {"epochs": args.epochs, "width": args.width, "lr": args.lr, "seed": args.seed}
    rows, curves = [], {}
    for label, extra in MODES.items():
        params = {**common, **extra}
        trial = local_trial(params)
        out = train.run(params, trial)
        epoch_times = [m["epoch_time_s"] for _, m in trial.sink.reports]
        rows.append((label, out, sum(epoch_times) / len(epoch_times)))
        checkpoint = str(trial.sink.artifact_dir / "model.pt")
        curves[label] = [
            evaluate.run({"checkpoint": checkpoint, "tol": 1e-6, "max_iter": cap}, local_trial())
            for cap in args.caps
        ]
    print(
        f"digits, {args.epochs} epochs, width {args.width}, lr {args.lr}, seed {args.seed}, "
        f"{args.threads} thread(s)\n"
    )
    print(
        "| gradient | test accuracy | forward NFE | backward NFE | train s/epoch | "
        "spectral radius |"
    )
    print("|---|---|---|---|---|---|")
    for label, out, seconds in rows:
        print(
            f"| {label} | {out['test_accuracy']:.4f} | {out['nfe_forward']:.1f} | "
            f"{out['nfe_backward']:.1f} | {seconds:.2f} | {out['spectral_radius']:.3f} |"
        )
    print("\nTest accuracy when Anderson may use at most N evaluations (its mean NFE, residual):\n")
    print("| gradient | " + " | ".join(f"N={c}" for c in args.caps) + " |")
    print("|---|" + "---|" * len(args.caps))
    for label, results in curves.items():
        cells = [
            f"{r['test_accuracy']:.3f} ({r['nfe_forward']:.0f}, {r['residual']:.0e})"
            for r in results
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
