"""Where Broyden's time goes: the same solve with its trust-region algebra made free.

For each problem, seed and memory this times forward iteration, the shipped Broyden solver, and
the same Broyden solve replayed: the host-side trust region (``_TrustRegion.step`` and
``.update``: the two m x m solves, the dogleg, the radius, on the host) is swapped for a tape
of what it returned in a recorded run of the same solve, so every torch operation (f, the
residual monitor, the window's products, the step) runs as before and the algebra costs
nothing. The replay takes the same iterates and NFE, so its time is the lower bound any faster
trust region (compiled, on the device, or cheaper in NumPy) could reach with this algorithm.
Times are minima over ``--repeats`` rounds that run the three in turn, of this process's CPU
time, one torch thread.

    OPENBLAS_NUM_THREADS=1 python bench/deq_broyden_cost.py --repeats 11 \
        --out bench/results/deq_broyden_cost.json                 # ~3 min here
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from deq_solvers import interleaved, make_problem, parse_problem, write_rows

from jobs.deq.solvers import SolverStats, solve

# the package exports the function ``broyden``, which hides the module of the same name
BROYDEN = importlib.import_module("jobs.deq.solvers.broyden")
TrustRegion = BROYDEN._TrustRegion
Func = Callable[[torch.Tensor], torch.Tensor]


def recording(tape: list[Any]) -> type:
    """A ``_TrustRegion`` that appends every answer it gives to ``tape`` (for a step: the
    coefficients it wrote, too)."""

    class Recording(TrustRegion):
        def step(self) -> int:
            n = super().step()
            tape.append((n, self.weights[:, :n].copy()))
            return n

        def update(self, *args: Any) -> Any:
            tape.append(super().update(*args))
            return tape[-1]

    return Recording


def replaying(tape: list[Any]) -> type:
    """A stand-in for ``_TrustRegion`` that gives back ``tape``'s answers in order."""

    class Replay:
        def __init__(self, gg: np.ndarray, m: int, weights: torch.Tensor) -> None:
            self.answers = iter(tape)
            self.weights = weights.numpy()[:, 0]

        def step(self) -> int:
            n, written = next(self.answers)
            self.weights[:, :n] = written
            return int(n)

        def update(self, *_: Any) -> Any:
            return next(self.answers)

    return Replay


def run(
    f: Func, z0: torch.Tensor, method: str, memory: int, args: argparse.Namespace
) -> SolverStats:
    with torch.no_grad():
        return solve(f, z0, method, tol=args.tol, max_iter=args.max_iter, memory=memory)[1]


def swapped(trust_region: type, call: Callable[[], SolverStats]) -> SolverStats:
    """``call()`` with the solver's trust region swapped for ``trust_region``."""
    BROYDEN._TrustRegion = trust_region
    try:
        return call()
    finally:
        BROYDEN._TrustRegion = TrustRegion


def measure(
    f: Func, z0: torch.Tensor, memory: int, args: argparse.Namespace
) -> tuple[SolverStats, SolverStats, SolverStats, dict[str, float]]:
    """Stats of forward, Broyden and Broyden replayed, and their interleaved CPU times."""
    tape: list[Any] = []
    broyden = swapped(recording(tape), lambda: run(f, z0, "broyden", memory, args))
    cases = {
        "forward": lambda: run(f, z0, "forward", 1, args),
        "broyden": lambda: run(f, z0, "broyden", memory, args),
        "free": lambda: swapped(replaying(tape), lambda: run(f, z0, "broyden", memory, args)),
    }
    times = {name: t["cpu_s"] for name, t in interleaved(cases, args.repeats).items()}
    return cases["forward"](), broyden, cases["free"](), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["monotone@512", "trained"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--memory", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--max-iter", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write every row (and the settings) as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| problem | seed | m | forward NFE | ms | Broyden NFE | ms | / forward | "
        "algebra free: ms | / forward | algebra per step (us) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for problem, dim in map(parse_problem, args.problems):
        for seed in args.seeds:
            f, z0 = make_problem(problem, dim, args.batch, seed)
            for memory in args.memory:
                fwd, broyden, free, times = measure(f, z0, memory, args)
                fwd_s, broyden_s, free_s = times["forward"], times["broyden"], times["free"]
                assert free.nfe == broyden.nfe and free.trace == broyden.trace, "replay diverged"
                per_step = (broyden_s - free_s) / broyden.nfe
                row = {
                    "problem": problem,
                    "dim": z0.shape[1],
                    "seed": seed,
                    "memory": memory,
                    "forward_nfe": fwd.nfe,
                    "forward_cpu_s": fwd_s,
                    "broyden_nfe": broyden.nfe,
                    "broyden_cpu_s": broyden_s,
                    "algebra_free_cpu_s": free_s,
                    "algebra_per_step_s": per_step,
                }
                rows.append(row)
                print(
                    f"| {problem} | {seed} | {memory} | {fwd.nfe} | {fwd_s * 1e3:.1f} | "
                    f"{broyden.nfe} | {broyden_s * 1e3:.1f} | {broyden_s / fwd_s:.2f} | "
                    f"{free_s * 1e3:.1f} | {free_s / fwd_s:.2f} | {per_step * 1e6:.0f} |",
                    flush=True,
                )
    if args.out:
        write_rows(args, rows)


if __name__ == "__main__":
    main()
