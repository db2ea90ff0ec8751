"""Memory of a process that owns a study over many trials, as orch's study hub does.

Research for issue 16 (see docs/scaling.md). Each backend runs in its own fresh process: ask,
suggest 5 params, ``--steps`` intermediate values and 4 user attrs written through the raw
storage (as ``StudyHub.report``/``finish`` do), then tell through the study. Every ``--block``
trials: RSS after ``gc.collect()``, trials held in Optuna's ``_CachedStorage``, and the block's
throughput. A RandomSampler keeps it quick: the caches measured don't depend on the sampler.

    python bench/study_memory.py [--trials 10000] [--steps 1] [--backends memory,sqlite,postgres]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna
import psutil

from orchestrator._sqlite import tune_sqlite

optuna.logging.set_verbosity(optuna.logging.ERROR)


def one(backend: str, url: str, trials: int, steps: int, block: int) -> list[dict[str, Any]]:
    """Run ``trials`` trials in this process; return one row per block."""
    if backend == "memory":
        raw: Any = optuna.storages.InMemoryStorage()
    else:
        tune_sqlite()
        raw = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=raw, sampler=optuna.samplers.RandomSampler(seed=0))
    me = psutil.Process()
    gc.collect()
    rows = [{"trials": 0, "rss_mb": round(me.memory_info().rss / 2**20, 1)}]
    started = time.perf_counter()
    for n in range(1, trials + 1):
        trial = study.ask()
        x = trial.suggest_float("x", -5, 5)
        trial.suggest_float("y", -5, 5)
        trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        trial.suggest_int("depth", 1, 6)
        trial.suggest_categorical("shape", ["bowl", "ridge", "saddle"])
        for step in range(steps):
            raw.set_trial_intermediate_value(trial._trial_id, step, x + 1.0 / (step + 1))
        for key, value in (
            ("mlflow_run_id", f"{n:032x}"),
            ("orch.attempts", 1),
            ("orch.duration_s", 0.05),
            ("orch.node_ip", "127.0.0.1"),
        ):
            raw.set_trial_user_attr(trial._trial_id, key, value)
        study.tell(trial, x * x)
        if n % block == 0:
            gc.collect()
            cache = getattr(study._storage, "_studies", {})
            held = sum(len(info.trials) for info in cache.values())
            rows.append(
                {
                    "trials": n,
                    "rss_mb": round(me.memory_info().rss / 2**20, 1),
                    "cached_trials": held,
                    "trials_per_s": round(block / (time.perf_counter() - started), 1),
                }
            )
            print(json.dumps({"backend": backend, **rows[-1]}), flush=True)
            started = time.perf_counter()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--backends", default="memory,sqlite,postgres")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", nargs=2, metavar=("BACKEND", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        rows = one(args.one[0], args.one[1], args.trials, args.steps, args.block)
        sys.stdout.write("ROWS " + json.dumps(rows) + "\n")
        return
    results: dict[str, Any] = {"trials": args.trials, "steps": args.steps, "backends": {}}
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="orch-mem-") as tmp:
            for backend in args.backends.split(","):
                url = "-"
                if backend == "sqlite":
                    url = f"sqlite:///{tmp}/mem.db"
                elif backend == "postgres":
                    if server is None:
                        from tests.postgres import PostgresServer

                        server = PostgresServer(fast=False, settings={"synchronous_commit": "off"})
                        server.start()
                    url = server.url(server.create_database())
                command = [sys.executable, __file__, "--one", backend, url]
                command += [f"--trials={args.trials}", f"--steps={args.steps}"]
                command += [f"--block={args.block}"]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                sys.stderr.write(done.stdout.replace(url, "<url>") if url != "-" else done.stdout)
                line = next(x for x in done.stdout.splitlines() if x.startswith("ROWS "))
                rows = json.loads(line[5:])
                per_block = [
                    (b["rss_mb"] - a["rss_mb"]) * 1000 / (b["trials"] - a["trials"])
                    for a, b in itertools.pairwise(rows[1:])
                ]
                results["backends"][backend] = {
                    "rows": rows,
                    "mb_per_1000_trials_after_first_block": round(
                        sum(per_block) / max(len(per_block), 1), 2
                    ),
                }
    finally:
        if server is not None:
            server.close()
    text = json.dumps(results, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
