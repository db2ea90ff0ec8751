"""One solver's time now against its code at an earlier git revision, in the same process.

The solver modules of ``--against`` (``jobs/deq/solvers/*.py`` at that revision, read with
``git show``) are loaded as a package of their own and registered beside today's, and forward
iteration, today's solver and the old one run in turn in each of ``--repeats`` rounds
(:func:`deq_solvers.interleaved`), so machine drift falls on all three alike. NFE of both
versions are printed: a change meant to keep the arithmetic must leave them equal.

    OPENBLAS_NUM_THREADS=1 python bench/deq_solver_revisions.py --against 2ee2f5b \\
        --method broyden --memory 4 5 6 --repeats 200 --out bench/results/deq_broyden_revisions.json
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from deq_solvers import Func, interleaved, make_problem, parse_problem, write_rows

from jobs.deq.solvers import register_solver, solve

PACKAGE = "jobs.deq.solvers"


def load_solvers(revision: str, into: Path) -> str:
    """Copy the solver package at ``revision`` into ``into``; return the package's name."""
    name = f"solvers_{revision.replace('/', '_')}"
    root = into / name
    root.mkdir()
    listing = subprocess.run(
        ["git", "ls-tree", "--full-tree", "--name-only", f"{revision}:jobs/deq/solvers"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for file in (f for f in listing if f.endswith(".py")):
        source = subprocess.run(
            ["git", "show", f"{revision}:jobs/deq/solvers/{file}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (root / file).write_text(source.replace(PACKAGE, name))
    sys.path.insert(0, str(into))
    return name


def compare(f: Func, z0: torch.Tensor, memory: int, args: argparse.Namespace) -> dict[str, float]:
    """NFE of today's and the old solver at ``memory``, and the interleaved CPU time of
    forward iteration, today's solver and the old one."""

    def run(method: str) -> int:
        with torch.no_grad():
            stats = solve(f, z0, method, tol=args.tol, max_iter=args.max_iter, memory=memory)[1]
        return stats.nfe

    nfe_now, nfe_then = run(args.method), run("old")  # also compiles and warms both up
    cases = {"forward": lambda: run("forward"), "now": lambda: run(args.method)}
    times = interleaved(cases | {"then": lambda: run("old")}, args.repeats)
    return {"nfe_now": nfe_now, "nfe_then": nfe_then} | {
        f"{name}_cpu_s": t["cpu_s"] for name, t in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--method", default="broyden")
    parser.add_argument("--memory", type=int, nargs="+", default=[5])
    parser.add_argument("--problems", nargs="+", default=["trained"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--max-iter", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, help="write every row (and the settings) as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| problem | seed | m | NFE now / then | forward ms | now ms | then ms | now / forward "
          "| then / forward |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = importlib.import_module(load_solvers(args.against, Path(tmp)))
        register_solver("old", old.get_solver(args.method), replace=True)
        for problem, dim in map(parse_problem, args.problems):
            for seed in args.seeds:
                f, z0 = make_problem(problem, dim, args.batch, seed)
                for memory in args.memory:
                    r = compare(f, z0, memory, args)
                    fwd, now, then = r["forward_cpu_s"], r["now_cpu_s"], r["then_cpu_s"]
                    print(
                        f"| {problem} | {seed} | {memory} | {r['nfe_now']} / {r['nfe_then']} | "
                        f"{fwd * 1e3:.2f} | {now * 1e3:.2f} | {then * 1e3:.2f} | "
                        f"{now / fwd:.3f} | {then / fwd:.3f} |",
                        flush=True,
                    )
                    rows.append({"problem": problem, "seed": seed, "memory": memory} | r)
    if args.out:
        write_rows(args, rows)


if __name__ == "__main__":
    main()
