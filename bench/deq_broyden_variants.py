"""Which limited-memory Broyden? NFE per memory of the variants we measured before choosing.

All work on g(z) = f(z) - z from the inverse-Jacobian estimate H0 = -I, with the last ``m``
secant pairs (s_i, y_i), and are counted by the same residual monitor as the shipped solvers:

- ``restart``: Broyden's first update in Sherman-Morrison form, restarted from -I every ``m``
  updates (orch's solver before issue 14).
- ``sequential``: the compact representation of ``m`` successive first updates (Byrd, Nocedal &
  Schnabel 1994), H = -I + (S + Y)(S^T Y + L)^-1 S^T, L the strictly lower part of S^T S in
  time order; the oldest pair is dropped.
- ``multisecant``: Gay & Schnabel's multiple-secant update, H = -I + (S + Y)(S^T Y)^-1 S^T
  (every secant equation of the window holds; the same step as Type-I Anderson).
- ``rank-reduction``: Broyden rank reduction (van de Rotten & Verduyn Lunel 2003) on H: when
  the memory is full, the rank-m correction is cut to rank m - 1 by an SVD before the update.
- ``shipped``: ``multisecant`` with the dogleg trust region of ``jobs.deq.solvers.broyden``.

    python bench/deq_broyden_variants.py                      # ~10 min on 2 busy cores
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from deq_solvers import make_problem, parse_problem
from torch import Tensor

from jobs.deq.solvers import SolverOptions, SolverStats, get_solver
from jobs.deq.solvers._base import Monitor

Func = Callable[[Tensor], Tensor]


def _low_rank(x: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """``sum_i (left_i . x) right_i`` per sample, for rows of (B, n, D)."""
    return torch.bmm(torch.bmm(x.unsqueeze(1), left.mT), right).squeeze(1)


def restart(f: Func, z0: Tensor, opts: SolverOptions, reduce: bool = False) -> SolverStats:
    """Broyden's first update on H = -I + U V^T; a full memory restarts (or is rank-reduced)."""
    monitor = Monitor(z0, opts, "restart")
    m = opts.memory
    us, vs = z0.new_zeros(z0.shape[0], m, z0.shape[1]), z0.new_zeros(z0.shape[0], m, z0.shape[1])
    z, fz = z0, f(z0)
    if monitor.check(z, fz):
        return monitor.finish()[1]
    g, n = fz - z, 0
    for _ in range(opts.max_iter - 1):
        step = g - _low_rank(g, vs[:, :n], us[:, :n])
        z_new = z + step
        fz = f(z_new)
        if monitor.check(z_new, fz):
            break
        g_new = fz - z_new
        if n == m and reduce:  # SVD of U^T V = (Qu Ru)(Qv Rv)^T, keep the m - 1 largest terms
            qu, ru = torch.linalg.qr(us.mT.double())
            qv, rv = torch.linalg.qr(vs.mT.double())
            left, sigma, right = torch.linalg.svd(ru @ rv.mT)
            us[:, : m - 1] = ((qu @ left) * sigma[:, None]).mT[:, : m - 1].to(z.dtype)
            vs[:, : m - 1] = (qv @ right.mT).mT[:, : m - 1].to(z.dtype)
            n = m - 1
        elif n == m:
            n = 0
        dz, dg = step, g_new - g
        h_dg = _low_rank(dg, vs[:, :n], us[:, :n]) - dg
        ht_dz = _low_rank(dz, us[:, :n], vs[:, :n]) - dz
        denom = (ht_dz * dg).sum(dim=1, keepdim=True)
        ok = denom.abs() > 1e-30
        us[:, n] = torch.where(ok, (dz - h_dg) / torch.where(ok, denom, 1.0), 0.0)
        vs[:, n] = ht_dz
        n += 1
        z, g = z_new, g_new
    return monitor.finish()[1]


def window(f: Func, z0: Tensor, opts: SolverOptions, sequential: bool) -> SolverStats:
    """The compact sliding-window update, sequential (with L) or multisecant (without)."""
    monitor = Monitor(z0, opts, "window")
    batch, dim, m = *z0.shape, opts.memory
    s_buf, y_buf = z0.new_zeros(batch, m, dim), z0.new_zeros(batch, m, dim)
    born = torch.full((m,), -1)
    z, fz = z0, f(z0)
    if monitor.check(z, fz):
        return monitor.finish()[1]
    g = fz - z
    for k in range(opts.max_iter - 1):
        n = min(k, m)
        step = g
        if n:
            s, y = s_buf[:, :n].double(), y_buf[:, :n].double()
            system = s @ y.mT
            if sequential:
                system = system + (s @ s.mT) * (born[:n, None] > born[None, :n])
            coef = torch.linalg.solve_ex(system, s @ g.double().unsqueeze(2))[0]
            coef = coef.nan_to_num(0.0, 0.0, 0.0).to(z.dtype)
            step = g - torch.bmm(coef.mT, s_buf[:, :n] + y_buf[:, :n]).squeeze(1)
        z_new = z + step
        fz = f(z_new)
        if monitor.check(z_new, fz):
            break
        g_new = fz - z_new
        s_buf[:, k % m], y_buf[:, k % m], born[k % m] = step, g_new - g, k
        z, g = z_new, g_new
    return monitor.finish()[1]


VARIANTS: dict[str, Callable[[Func, Tensor, SolverOptions], SolverStats]] = {
    "restart": restart,
    "sequential": lambda f, z0, o: window(f, z0, o, sequential=True),
    "multisecant": lambda f, z0, o: window(f, z0, o, sequential=False),
    "rank-reduction": lambda f, z0, o: restart(f, z0, o, reduce=True),
    "shipped": lambda f, z0, o: get_solver("broyden")(f, z0, o)[1],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["linear-hard@1024", "monotone@512"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--memory", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 8, 10, 30])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--max-iter", type=int, default=1500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"NFE to relative tolerance {args.tol:g}, batch {args.batch}; '!' = not converged in")
    print(f"{args.max_iter} evaluations, 'nan' = diverged\n")
    memories = " | ".join(f"m={m}" for m in args.memory)
    print(f"| problem | seed | variant | forward | {memories} |")
    print("|---" * (4 + len(args.memory)) + "|")
    for problem, dim in map(parse_problem, args.problems):
        for seed in args.seeds:
            f, z0 = make_problem(problem, dim, args.batch, seed)
            with torch.no_grad():
                opts = SolverOptions(tol=args.tol, max_iter=args.max_iter)
                forward = get_solver("forward")(f, z0, opts)[1].nfe
                for name, variant in VARIANTS.items():
                    cells = []
                    for memory in args.memory:
                        opts = SolverOptions(tol=args.tol, max_iter=args.max_iter, memory=memory)
                        stats = variant(f, z0, opts)
                        mark = "nan" if stats.diverged else "" if stats.all_converged else "!"
                        cells.append(f"{stats.nfe}{mark}")
                    print(f"| {problem} | {seed} | {name} | {forward} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
