"""A large simulated sweep: how driver memory and per-trial latency grow with the trial count.

2,000 trials of a job that sleeps 50 ms, 64 at a time, on one Ray node with 64 fake CPUs.
Every second the resident memory of the driver, the study hub and the tracker is sampled;
per block of 200 trials the table shows throughput, the orchestration latency of a trial
(its recorded duration minus the 50 ms of work) and the memory at the end of the block.

    python bench/scale.py [--trials 2000] [--parallel 64] [--sampler random] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import optuna
import psutil
import ray

from orchestrator import sweep
from orchestrator.spec import Spec

SLEEP_S = 0.05


class MemorySampler(threading.Thread):
    """Samples the RSS (MB) of this process and of the hub and tracker actors every second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        me = psutil.Process(os.getpid())
        while not self.stop.wait(1.0):
            sample = {"t": time.time(), "driver": me.memory_info().rss / 2**20}
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                line = " ".join(proc.info["cmdline"] or [])
                for role, marker in (("hub", "ray::StudyHub"), ("tracker", "ray::Tracker")):
                    if line.startswith(marker) and proc.info["memory_info"]:
                        sample[role] = proc.info["memory_info"].rss / 2**20
            self.samples.append(sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--sampler", default="random")
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    args = parser.parse_args()
    ray.init(
        num_cpus=args.parallel,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    spec = Spec.model_validate(
        {
            "name": "scale",
            "job": "jobs.noop:run",
            "objective": {"metric": "loss"},
            "trials": args.trials,
            "parallel": args.parallel,
            "sampler": {"type": args.sampler, "seed": 0},
            "space": {
                "x": {"type": "float", "low": -5.0, "high": 5.0},
                "y": {"type": "float", "low": -5.0, "high": 5.0},
            },
            "fixed": {"sleep_s": SLEEP_S},
        }
    )
    sampler = MemorySampler()
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="orch-scale-") as tmp:
        start = time.perf_counter()
        result = sweep(spec, workspace=tmp, log_to_driver=False)
        wall = time.perf_counter() - start
        study = optuna.load_study(study_name="scale", storage=result.storage)
        trials = sorted(study.trials, key=lambda t: t.number)
    sampler.stop.set()
    ray.shutdown()
    rows = []
    for first in range(0, len(trials), args.block):
        block = trials[first : first + args.block]
        begin = min(t.datetime_start for t in block).timestamp()
        end = max(t.datetime_complete for t in block).timestamp()
        latency = [t.duration.total_seconds() - SLEEP_S for t in block]
        memory = [s for s in sampler.samples if s["t"] <= end] or sampler.samples[:1]
        rows.append(
            {
                "trials": f"{first}-{first + len(block) - 1}",
                "trials_per_s": len(block) / (end - begin),
                "latency_ms_median": 1000 * statistics.median(latency),
                "latency_ms_p95": 1000 * sorted(latency)[int(0.95 * (len(latency) - 1))],
                **{f"{k}_mb": memory[-1].get(k, 0.0) for k in ("driver", "hub", "tracker")},
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"wall_s": wall, "timings": result.timings, "rows": rows}, indent=2)
    )
    print(f"{len(trials)} trials in {wall:.1f}s ({len(trials) / wall:.1f} trials/s)")
    print(
        "\n| trials | trials/s | latency median (ms) | latency p95 (ms) | driver MB | hub MB "
        "| tracker MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['trials']} | {r['trials_per_s']:.1f} | {r['latency_ms_median']:.0f} "
            f"| {r['latency_ms_p95']:.0f} | {r['driver_mb']:.0f} | {r['hub_mb']:.0f} "
            f"| {r['tracker_mb']:.0f} |"
        )
    print("\ntime per activity:", json.dumps(result.timings, indent=1))


if __name__ == "__main__":
    main()
