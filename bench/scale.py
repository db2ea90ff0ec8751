"""A 10,000-trial TPE sweep: does orch slow down or grow with the study, on sqlite and PostgreSQL?

No-op trials (``jobs.noop:run``: no sleep, no report), 64 at a time on one Ray node with 64
declared CPUs, TPE seeded, through ``orchestrator.sweep()`` with MLflow tracking on: the hub's
cost per trial is all there is to measure. Per block of 1,000 finished trials (in the order
they finished) the script reports:

- throughput: 1,000 / the seconds between the block's last finish and the previous block's;
- ask latency p50/p95: from a free slot to its new trial handed out, as the driver's loop sees
  it (the ``hub.ask`` call; a Listener notes the last ``finished`` and the next ``started``);
- memory: the resident set size (MB) of the driver (this process), the study hub and the
  tracker actors at the block's end, sampled every second.

Goals (issue 16): the last block's throughput >= 50 % of the second block's; memory growth
<= 10 MB per 1,000 trials in each process (from the end of block 1 to the last block's).
``--optuna`` also runs plain Optuna (ask/tell of the same TPE on the same kind of storage, one
process, the peer a user would otherwise write) for the same trials, blocks measured the same.

    python bench/scale.py [--trials 10000] [--stores sqlite,postgres] [--parallel 64]
                          [--block 1000] [--optuna] [--set sampler.history=all] [--out FILE]

PostgreSQL is a throwaway server from tests/postgres.py (durable: fsync on, commits as sqlite's
WAL mode: ``synchronous_commit=off``), bound to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna
import psutil
import ray
import yaml

from orchestrator import sweep
from orchestrator.engine import Listener
from orchestrator.spec import Spec, apply_overrides
from orchestrator.trial import Outcome, Ticket

SPACE = {
    "x": {"type": "float", "low": -5.0, "high": 5.0},
    "y": {"type": "float", "low": -5.0, "high": 5.0},
    "lr": {"type": "float", "low": 1.0e-5, "high": 1.0e-1, "log": True},
    "depth": {"type": "int", "low": 1, "high": 6},
    "shape": {"type": "categorical", "choices": ["bowl", "ridge", "saddle"]},
}


class MemorySampler(threading.Thread):
    """Every second: the RSS (MB) of this process and of its hub and tracker actors."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        me = psutil.Process(os.getpid())
        while not self.stop.wait(1.0):
            sample = {"t": time.time(), "driver": me.memory_info().rss / 2**20}
            for proc in me.children(recursive=True):  # this run's Ray only
                try:
                    line = " ".join(proc.cmdline())
                    for role, marker in (("hub", "ray::StudyHub"), ("tracker", "ray::Tracker")):
                        if line.startswith(marker):
                            sample[role] = proc.memory_info().rss / 2**20
                except psutil.Error:
                    continue
            self.samples.append(sample)


class AskTimes(Listener):
    """Seconds from the last trial that freed a slot to the next trial handed out."""

    def __init__(self) -> None:
        self.freed: float | None = None
        self.count = 0  # trials finished so far
        self.samples: list[tuple[int, float]] = []  # (trials finished before, seconds)

    def finished(self, ticket: Ticket, outcome: Outcome) -> None:
        self.freed = time.perf_counter()
        self.count += 1

    def started(self, ticket: Ticket) -> None:
        if self.freed is not None:
            self.samples.append((self.count, time.perf_counter() - self.freed))
            self.freed = None


def spec_for(args: argparse.Namespace) -> Spec:
    raw: dict[str, Any] = {
        "name": "scale",
        "job": "jobs.noop:run",
        "objective": {"metric": "loss"},
        "trials": args.trials,
        "parallel": args.parallel,
        "sampler": {"type": "tpe", "seed": 0},
        "space": SPACE,
    }
    return Spec.model_validate(apply_overrides(raw, args.set)[0])


def blocks(
    finishes: list[float], start: float, block: int, asks: list[tuple[int, float]]
) -> list[dict[str, Any]]:
    """Throughput and ask latency per ``block`` finished trials (``finishes``: sorted times)."""
    rows = []
    previous = start
    for first in range(0, len(finishes) - block + 1, block):
        end = finishes[first + block - 1]
        latency = sorted(s for n, s in asks if first <= n < first + block)
        rows.append(
            {
                "trials": f"{first}-{first + block - 1}",
                "end": end,
                "trials_per_s": round(block / (end - previous), 2),
                "ask_ms_p50": round(1000 * statistics.median(latency), 1) if latency else None,
                "ask_ms_p95": round(1000 * latency[int(0.95 * (len(latency) - 1))], 1)
                if latency
                else None,
            }
        )
        previous = end
    return rows


def add_memory(rows: list[dict[str, Any]], samples: list[dict[str, float]]) -> None:
    for row in rows:
        before = [s for s in samples if s["t"] <= row["end"]] or samples[:1]
        for role in ("driver", "hub", "tracker"):
            row[f"{role}_mb"] = round(before[-1].get(role, 0.0), 1) if before else None


def verdict(rows: list[dict[str, Any]], block: int) -> dict[str, Any]:
    """The two goals, from the rows of one run."""
    if len(rows) < 3:
        return {}
    ratio = rows[-1]["trials_per_s"] / rows[1]["trials_per_s"]
    per_k = 1000 / block / (len(rows) - 1)
    growth = {
        role: round((rows[-1][f"{role}_mb"] - rows[0][f"{role}_mb"]) * per_k, 2)
        for role in ("driver", "hub", "tracker")
        if rows[0].get(f"{role}_mb") is not None
    }
    return {
        "last_over_second_block": round(ratio, 2),
        "throughput_goal_met": ratio >= 0.5,
        "mb_per_1000_trials": growth,
        "memory_goal_met": all(g <= 10.0 for g in growth.values()),
    }


def run_orch(args: argparse.Namespace, store: str, server: Any, folder: Path) -> dict[str, Any]:
    spec = spec_for(args)
    storage = tracking = None
    if store == "postgres":
        storage = server.url(server.create_database())
        tracking = server.url(server.create_database())
    ray.init(
        num_cpus=args.parallel, include_dashboard=False, logging_level="WARNING",
        log_to_driver=False,
    )  # fmt: skip
    memory = MemorySampler()
    memory.start()
    asks = AskTimes()
    started = time.time()
    try:
        result = sweep(
            spec,
            storage=storage,
            tracking_uri=tracking,
            workspace=folder / store,
            listener=asks,
            log_to_driver=False,
            report=False,
        )
    finally:
        memory.stop.set()
        ray.shutdown()
    wall = time.time() - started
    study = optuna.load_study(study_name="scale", storage=result.storage)
    finishes = sorted(t.datetime_complete.timestamp() for t in study.trials if t.datetime_complete)
    rows = blocks(finishes, started, args.block, asks.samples)
    add_memory(rows, memory.samples)
    return {
        "tool": "orch",
        "store": store,
        "trials": len(finishes),
        "wall_s": round(wall, 1),
        "counts": result.counts,
        "errors": result.errors,
        "timings": result.timings,
        "rows": rows,
        "goals": verdict(rows, args.block),
    }


def run_optuna(args: argparse.Namespace, store: str, server: Any, folder: Path) -> dict[str, Any]:
    """Plain Optuna, ask and tell in one process, the same TPE settings and kind of storage."""
    from orchestrator._sqlite import tune_sqlite

    tune_sqlite()
    spec = spec_for(args)
    if store == "postgres":
        url = server.url(server.create_database())
    else:
        url = f"sqlite:///{folder / 'optuna-plain.db'}"
    sampler = spec.sampler.model_dump(exclude={"type", "seed", "history"})
    study = optuna.create_study(
        storage=url,
        sampler=optuna.samplers.TPESampler(seed=0, **sampler),
        study_name="plain",
    )
    distributions = {
        "x": optuna.distributions.FloatDistribution(-5.0, 5.0),
        "y": optuna.distributions.FloatDistribution(-5.0, 5.0),
        "lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
        "depth": optuna.distributions.IntDistribution(1, 6),
        "shape": optuna.distributions.CategoricalDistribution(["bowl", "ridge", "saddle"]),
    }
    me = psutil.Process(os.getpid())
    started = time.time()
    asks: list[tuple[int, float]] = []
    finishes: list[float] = []
    memory: list[dict[str, float]] = []
    for number in range(args.trials):
        begin = time.perf_counter()
        trial = study.ask(distributions)
        asks.append((number, time.perf_counter() - begin))
        p = trial.params
        study.tell(trial, (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2)
        finishes.append(time.time())
        if number % 100 == 0:
            memory.append({"t": time.time(), "driver": me.memory_info().rss / 2**20})
    memory.append({"t": time.time(), "driver": me.memory_info().rss / 2**20})
    rows = blocks(finishes, started, args.block, asks)
    add_memory(rows, memory)
    return {
        "tool": "optuna",
        "store": store,
        "trials": len(finishes),
        "wall_s": round(time.time() - started, 1),
        "rows": rows,
        "goals": verdict(rows, args.block),
    }


def table(run: dict[str, Any]) -> str:
    lines = [
        f"\n{run['tool']} on {run['store']}: {run['trials']} trials in {run['wall_s']}s",
        "| trials | trials/s | ask p50 (ms) | ask p95 (ms) | driver MB | hub MB | tracker MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in run["rows"]:
        lines.append(
            f"| {r['trials']} | {r['trials_per_s']} | {r['ask_ms_p50']} | {r['ask_ms_p95']} "
            f"| {r['driver_mb']} | {r.get('hub_mb', '')} | {r.get('tracker_mb', '')} |"
        )
    lines.append(f"goals: {json.dumps(run['goals'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--optuna", action="store_true", help="also run plain Optuna")
    parser.add_argument("--set", action="append", default=[], help="spec override, key=value")
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    command = "python bench/scale.py " + " ".join(sys.argv[1:])
    spec = yaml.safe_dump(spec_for(args).model_dump(mode="json"), sort_keys=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def record(run: dict[str, Any]) -> None:
        """Print a run's table and write every run so far (a long bench stopped keeps them)."""
        runs.append(run)
        print(table(run), flush=True)
        args.out.write_text(json.dumps({"command": command, "spec": spec, "runs": runs}, indent=1))

    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="orch-scale-") as tmp:
            for store in args.stores.split(","):
                if store == "postgres" and server is None:
                    from tests.postgres import PostgresServer

                    server = PostgresServer(fast=False, settings={"synchronous_commit": "off"})
                    server.start()
                record(run_orch(args, store, server, Path(tmp)))
                if args.optuna:
                    record(run_optuna(args, store, server, Path(tmp)))
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
