"""Memory of the backward pass as the solver's iterations grow: implicit vs phantom vs unrolled.

Each configuration runs a forward solve of exactly N iterations (tolerance 0, so it never
stops early) and one backward, in a fresh Python subprocess, and records
- saved-tensor bytes: what autograd stores for backward, counted exactly with
  ``torch.autograd.graph.saved_tensors_hooks`` (distinct storages, CPU or GPU);
- peak RSS growth: the process's peak resident set (``ru_maxrss``) after forward + backward
  minus the peak before them, so the allocator's whole footprint counts, including the
  adjoint solver's buffers (on CUDA: ``torch.cuda.max_memory_allocated`` growth instead).
A fresh process per configuration keeps one configuration's peak from hiding the next one's.

    python bench/deq_backward_memory.py                    # ~1 min on 2 cores
    python bench/deq_backward_memory.py --iters 10 50 250 --width 2048
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch


def one(grad: str, iters: int, batch: int, width: int, device: str) -> dict[str, float]:
    from jobs.deq.core import DEQConfig, equilibrium
    from jobs.deq.solvers import SolverOptions

    torch.manual_seed(0)
    dev = torch.device(device)
    w = torch.randn(width, width, device=dev)
    w = (0.9 * w / torch.linalg.matrix_norm(w, ord=2)).requires_grad_()
    x = torch.randn(batch, width, device=dev)
    opts = SolverOptions(tol=1e-30, max_iter=iters, memory=5)
    cfg = DEQConfig(
        solver="forward", forward=opts, grad=grad, backward=opts, backward_solver="forward"
    )
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()  # a tensor saved by two ops is counted once
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    def rss_mb() -> float:
        if dev.type == "cuda":
            return torch.cuda.max_memory_allocated(dev) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10

    before = rss_mb()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        z, info = equilibrium(lambda z: torch.tanh(z @ w.T + x), torch.zeros_like(x), cfg)
        z.square().sum().backward()
    return {
        "saved_mb": sum(storages.values()) / 2**20,
        "peak_growth_mb": rss_mb() - before,
        "nfe_forward": info.forward.nfe,
        "nfe_backward": info.backward_nfe,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, nargs="+", default=[10, 20, 40, 80, 160])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", nargs=2, metavar=("GRAD", "ITERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        grad, iters = args.one
        print(json.dumps(one(grad, int(iters), args.batch, args.width, args.device)))
        return
    print(
        f"batch {args.batch}, width {args.width}, f = tanh(Wz + x), device {args.device}; "
        f"one activation = {args.batch * args.width * 4 / 2**20:.1f} MiB\n"
    )
    print("| grad | solver iterations | backward NFE | saved tensors MiB | peak growth MiB |")
    print("|---|---|---|---|---|")
    for grad in ("implicit", "phantom", "unrolled"):
        for iters in args.iters:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    grad,
                    str(iters),
                    "--batch",
                    str(args.batch),
                    "--width",
                    str(args.width),
                    "--device",
                    args.device,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout)
            print(
                f"| {grad} | {iters} | {r['nfe_backward']} | {r['saved_mb']:.1f} | "
                f"{r['peak_growth_mb']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
