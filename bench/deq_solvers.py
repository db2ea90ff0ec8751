"""NFE and time to reach a relative tolerance, per solver memory: our solvers vs torchdeq's.

Problems (batch B; ``name@d`` sets the dimension d): ``linear-hard`` z = Wz + b with W symmetric,
eigenvalues spread evenly over [-0.99, 0.99] (default d = 1024); ``monotone`` a monotone-operator
DEQ f(z) = relu(Kz + c), K = 0.99 W / |W|_2 with W = 0.95 I - A^T A + B - B^T (Winston & Kolter's
parametrisation; A, B with N(0, 0.01/d) entries; default d = 512); ``trained`` the f of a DEQ
(width 128) trained for one epoch on digits, on the first B test images; ``tanh-hard`` tanh of
the hard linear map (b scaled by 0.1); ``linear-easy`` / ``tanh-easy`` a random W with
|W|_2 = 0.9. Each seed draws new matrices and vectors (``trained``: a new training run).
Times are minima over ``--repeats`` rounds that run every method in turn (so drift in the
machine's speed falls on all of them alike): CPU time of this process (``time.process_time``;
with one thread it is the wall time of an idle machine and stays put when other work shares the
cores) and wall time. NFE counts calls of f; "ok" means every sample's returned point has
relative residual |f(z)-z|/|f(z)| below the tolerance. ``--out`` writes every row as JSON.

    python bench/deq_solvers.py --out bench/results/deq_solvers.json     # the three issue problems
    python bench/deq_solvers.py --problems tanh-hard@1024 linear-easy@64 --seeds 0
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from jobs.deq.solvers import solve

Func = Callable[[torch.Tensor], torch.Tensor]
Runner = Callable[[Func, torch.Tensor, float, int], torch.Tensor]
DEFAULT_DIMS = {"linear": 1024, "tanh": 1024, "monotone": 512, "trained": 128}


def hard_matrix(dim: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    return ((q * torch.linspace(-0.99, 0.99, dim, dtype=torch.float64)) @ q.T).float()


def easy_matrix(dim: int, gen: torch.Generator) -> torch.Tensor:
    w = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    return (0.9 * w / torch.linalg.matrix_norm(w, ord=2)).float()


def monotone_matrix(dim: int, gen: torch.Generator) -> torch.Tensor:
    a = 0.1 * torch.randn(dim, dim, generator=gen, dtype=torch.float64) / dim**0.5
    b = 0.1 * torch.randn(dim, dim, generator=gen, dtype=torch.float64) / dim**0.5
    w = 0.95 * torch.eye(dim, dtype=torch.float64) - a.T @ a + b - b.T
    return (0.99 * w / torch.linalg.matrix_norm(w, ord=2)).float()


def make_problem(name: str, dim: int, batch: int, seed: int) -> tuple[Func, torch.Tensor]:
    if name == "trained":
        return trained_problem(batch, seed)
    gen = torch.Generator().manual_seed(seed)
    if name == "monotone":
        k = monotone_matrix(dim, gen).T.contiguous()
        c = torch.randn(batch, dim, generator=gen)
        return (lambda z: torch.relu(torch.addmm(c, z, k))), torch.zeros(batch, dim)
    w = (hard_matrix if name.endswith("hard") else easy_matrix)(dim, gen).T.contiguous()
    b = torch.randn(batch, dim, generator=gen)
    if name.startswith("linear"):
        return (lambda z: torch.addmm(b, z, w)), torch.zeros(batch, dim)
    b = 0.1 * b
    return (lambda z: torch.tanh(torch.addmm(b, z, w))), torch.zeros(batch, dim)


def trained_problem(batch: int, seed: int) -> tuple[Func, torch.Tensor]:
    from jobs.deq.data import load_dataset
    from jobs.deq.engine import train_epoch
    from jobs.deq.models import build_model
    from jobs.deq.params import TrainConfig

    torch.manual_seed(seed)
    cfg = TrainConfig(width=128, lr=0.01)
    data = load_dataset("digits")
    model = build_model(cfg.model_spec(data.in_shape, data.classes), cfg.deq_config())
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    train_epoch(
        model,
        optimizer,
        data.x_train,
        data.y_train,
        batch_size=64,
        generator=torch.Generator().manual_seed(seed),
        default_nfe=0,
        where="bench",
    )
    model.eval()
    with torch.no_grad():
        f, z0 = model.bind(data.x_test[:batch])
    return (lambda z: f(z).detach()), z0


def ours(method: str, memory: int) -> Runner:
    def run(f: Func, z0: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
        return solve(f, z0, method, tol=tol, max_iter=max_iter, memory=memory)[0]

    return run


def torchdeq(name: str, **kwargs: float) -> Runner:
    from torchdeq.solver import get_solver

    solver = get_solver(name)

    def run(f: Func, z0: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
        return solver(f, z0, max_iter=max_iter, tol=tol, stop_mode="rel", **kwargs)[0]

    return run


def interleaved(
    cases: dict[str, Callable[[], object]], repeats: int
) -> dict[str, dict[str, float]]:
    """Minimum CPU time (``cpu_s``) and wall time (``wall_s``) of each case over ``repeats``
    rounds that run every case in turn, so that drift in the machine's speed and load from other
    work fall on all of them alike."""
    best = {name: {"cpu_s": math.inf, "wall_s": math.inf} for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            case()
            times = best[name]
            times["wall_s"] = min(times["wall_s"], time.perf_counter() - start)
            times["cpu_s"] = min(times["cpu_s"], time.process_time() - start_cpu)
    return best


def measure(
    table: dict[str, tuple[Runner, int | None]],
    f: Func,
    z0: torch.Tensor,
    tol: float,
    max_iter: int,
    repeats: int,
) -> dict[str, dict[str, float]]:
    """NFE and final residual of each method (one counted run, which also warms it up), and
    its :func:`interleaved` CPU and wall time."""
    calls = 0

    def counted(z: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return f(z)

    rows: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for name, (run, _) in table.items():
            calls = 0
            z = run(counted, z0, tol, max_iter)
            fz = f(z)
            rel = torch.linalg.vector_norm(fz - z, dim=1) / torch.linalg.vector_norm(fz, dim=1)
            rows[name] = {"nfe": calls, "max_rel_residual": float(rel.max())}
        cases = {
            name: functools.partial(run, f, z0, tol, max_iter) for name, (run, _) in table.items()
        }
        times = interleaved(cases, repeats)
    return {name: rows[name] | times[name] for name in table}


def methods(args: argparse.Namespace) -> dict[str, tuple[Runner, int | None]]:
    """Name -> (runner, memory or None)."""
    table: dict[str, tuple[Runner, int | None]] = {"forward": (ours("forward", 1), None)}
    table |= {f"broyden m={m}": (ours("broyden", m), m) for m in args.broyden_memory}
    table |= {f"anderson m={m}": (ours("anderson", m), m) for m in args.anderson_memory}
    if not args.no_torchdeq:
        table |= {
            "torchdeq fixed_point_iter": (torchdeq("fixed_point_iter"), None),
            "torchdeq anderson (default m=6, lam=1e-4)": (torchdeq("anderson"), 6),
            "torchdeq anderson (m=5, lam=1e-8)": (torchdeq("anderson", m=5, lam=1e-8), 5),
            "torchdeq broyden (full memory)": (torchdeq("broyden"), None),
        }
    return table


def parse_problem(text: str) -> tuple[str, int]:
    name, _, dim = text.partition("@")
    return name, int(dim) if dim else DEFAULT_DIMS[name.split("-")[0]]


def write_rows(args: argparse.Namespace, rows: list[dict[str, object]]) -> None:
    """Write ``rows`` to ``args.out`` as JSON with the command, settings and versions."""
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    meta = {
        "command": " ".join(["python", *sys.argv]),
        "settings": settings,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--problems", nargs="+", default=["linear-hard@1024", "monotone@512", "trained"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--max-iter", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--broyden-memory", type=int, nargs="+", default=[*range(1, 11), 30, 100])
    parser.add_argument("--anderson-memory", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--no-torchdeq", action="store_true")
    parser.add_argument("--out", type=Path, help="write every row (and the settings) as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = methods(args)
    print(
        f"tol {args.tol:g} (relative), batch {args.batch}, max_iter {args.max_iter}, "
        f"{args.threads} thread(s), times = min of {args.repeats}\n"
    )
    header = "problem | d | seed | method | NFE | NFE / fwd | CPU ms | CPU / fwd | wall / fwd | ok"
    print(f"| {header} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for problem, dim in map(parse_problem, args.problems):
        for seed in args.seeds:
            f, z0 = make_problem(problem, dim, args.batch, seed)
            measured = measure(table, f, z0, args.tol, args.max_iter, args.repeats)
            base = measured["forward"]
            for name, (_, memory) in table.items():
                row = measured[name]
                ok = row["max_rel_residual"] < args.tol
                verdict = "yes" if ok else f"no ({row['max_rel_residual']:.1e})"
                rows.append(
                    {"problem": problem, "dim": z0.shape[1], "seed": seed, "method": name}
                    | {"memory": memory, **row, "ok": ok}
                )
                print(
                    f"| {problem} | {z0.shape[1]} | {seed} | {name} | {row['nfe']} | "
                    f"{row['nfe'] / base['nfe']:.2f} | {row['cpu_s'] * 1e3:.1f} | "
                    f"{row['cpu_s'] / base['cpu_s']:.2f} | {row['wall_s'] / base['wall_s']:.2f} | "
                    f"{verdict} |",
                    flush=True,
                )
    if args.out:
        write_rows(args, rows)


if __name__ == "__main__":
    main()
