"""NFE and wall time to reach a relative tolerance: our solvers vs torchdeq's.

Problems (batch B, dimension d): ``linear-hard`` z = Wz + b with W symmetric, eigenvalues spread
evenly over [-0.99, 0.99]; ``linear-easy`` with a random W scaled to |W|_2 = 0.9; ``tanh-hard``
and ``tanh-easy`` the same inside tanh (b scaled by 0.1 so tanh stays near its linear range);
``trained`` the f of a DEQ trained for one epoch on digits (one test batch of 64).
Times are minima over ``--repeats`` runs: CPU time of this process (``time.process_time``;
with one thread it is the wall time of an idle machine, and it stays put when other work shares
the cores) and wall time. NFE counts calls of f; "ok" means the
returned point's relative residual |f(z)-z|/|f(z)| is below the tolerance for every sample.

    python bench/deq_solvers.py                       # d = 64 and 1024, ~3 min on 2 cores
    python bench/deq_solvers.py --dims 4096 --problems linear-hard --repeats 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from jobs.deq.solvers import solve

Func = Callable[[torch.Tensor], torch.Tensor]


def hard_matrix(dim: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    return ((q * torch.linspace(-0.99, 0.99, dim, dtype=torch.float64)) @ q.T).float()


def easy_matrix(dim: int, gen: torch.Generator) -> torch.Tensor:
    w = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    return (0.9 * w / torch.linalg.matrix_norm(w, ord=2)).float()


def make_problem(name: str, dim: int, batch: int) -> tuple[Func, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    if name == "trained":
        return trained_problem()
    w = hard_matrix(dim, gen) if name.endswith("hard") else easy_matrix(dim, gen)
    b = torch.randn(batch, dim, generator=gen)
    if name.startswith("linear"):
        return (lambda z: z @ w.T + b), torch.zeros(batch, dim)
    b = 0.1 * b
    return (lambda z: torch.tanh(z @ w.T + b)), torch.zeros(batch, dim)


def trained_problem() -> tuple[Func, torch.Tensor]:
    from jobs.deq.data import load_dataset
    from jobs.deq.engine import train_epoch
    from jobs.deq.models import build_model
    from jobs.deq.params import TrainConfig

    torch.manual_seed(0)
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
        generator=torch.Generator().manual_seed(0),
        default_nfe=0,
        where="bench",
    )
    model.eval()
    with torch.no_grad():
        f, z0 = model.bind(data.x_test[:64])
    return (lambda z: f(z).detach()), z0


def ours(method: str, memory: int) -> Callable[[Func, torch.Tensor, float, int], torch.Tensor]:
    def run(f: Func, z0: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
        return solve(f, z0, method, tol=tol, max_iter=max_iter, memory=memory)[0]

    return run


def torchdeq(name: str) -> Callable[[Func, torch.Tensor, float, int], torch.Tensor]:
    from torchdeq.solver import get_solver

    solver = get_solver(name)

    def run(f: Func, z0: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
        return solver(f, z0, max_iter=max_iter, tol=tol, stop_mode="rel")[0]

    return run


def measure(run, f: Func, z0: torch.Tensor, tol: float, max_iter: int, repeats: int):
    calls = 0

    def counted(z: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return f(z)

    wall = cpu = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            calls = 0
            start, start_cpu = time.perf_counter(), time.process_time()
            z = run(counted, z0, tol, max_iter)
            wall = min(wall, time.perf_counter() - start)
            cpu = min(cpu, time.process_time() - start_cpu)
        fz = f(z)
        rel = (torch.linalg.vector_norm(fz - z, dim=1) / torch.linalg.vector_norm(fz, dim=1)).max()
    return calls, wall, cpu, float(rel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 1024])
    parser.add_argument(
        "--problems",
        nargs="+",
        default=["linear-hard", "tanh-hard", "linear-easy", "tanh-easy", "trained"],
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--max-iter", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--anderson-memory", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    parser.add_argument("--broyden-memory", type=int, nargs="+", default=[10, 30, 100, 2000])
    parser.add_argument("--no-torchdeq", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    methods: dict[str, Callable] = {"forward": ours("forward", 1)}
    methods |= {f"anderson m={m}": ours("anderson", m) for m in args.anderson_memory}
    methods |= {f"broyden m={m}": ours("broyden", m) for m in args.broyden_memory}
    if not args.no_torchdeq:
        methods |= {
            "torchdeq fixed_point_iter": torchdeq("fixed_point_iter"),
            "torchdeq anderson (default m=6, lam=1e-4)": torchdeq("anderson"),
            "torchdeq broyden (default, full memory)": torchdeq("broyden"),
        }
    print(
        f"tol {args.tol:g} (relative), batch {args.batch}, max_iter {args.max_iter}, "
        f"{args.threads} thread(s), times = min of {args.repeats}\n"
    )
    print(
        "| problem | d | method | NFE | NFE / fwd | CPU ms | CPU / fwd | wall ms | wall / fwd "
        "| ok |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for problem in args.problems:
        for dim in args.dims if problem != "trained" else [128]:
            f, z0 = make_problem(problem, dim, args.batch)
            base = None
            for name, run in methods.items():
                nfe, wall, cpu, rel = measure(run, f, z0, args.tol, args.max_iter, args.repeats)
                base = base or (nfe, cpu, wall)
                print(
                    f"| {problem} | {dim} | {name} | {nfe} | {nfe / base[0]:.2f} | "
                    f"{cpu * 1e3:.1f} | {cpu / base[1]:.2f} | "
                    f"{wall * 1e3:.1f} | {wall / base[2]:.2f} | "
                    f"{'yes' if rel < args.tol else f'no ({rel:.1e})'} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
