"""Orchestration overhead: no-op trials per second of orch against plain Optuna and Ray Tune.

All three run the same 2-parameter space with a seeded TPE sampler and an Optuna sqlite
storage, at parallel = 1, 2, 8, 32, 64 on one single-node Ray with fake resources (64 CPUs
declared). orch also writes every trial to MLflow (a sqlite store); the others do not.

    python bench/overhead.py [--parallel 1 2 8 32 64] [--trials 200] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import optuna
import ray

from jobs.noop import run as noop
from orchestrator import local_trial, sweep
from orchestrator.spec import Spec

SPACE = {
    "x": {"type": "float", "low": -5.0, "high": 5.0},
    "y": {"type": "float", "low": -5.0, "high": 5.0},
}


def trials_for(parallel: int, base: int) -> int:
    return max(base // 4, 50) if parallel == 1 else base


def bench_orch(parallel: int, trials: int, folder: Path) -> dict:
    spec = Spec.model_validate(
        {
            "name": f"orch-p{parallel}",
            "job": "jobs.noop:run",
            "objective": {"metric": "loss"},
            "trials": trials,
            "parallel": parallel,
            "resources": {"cpus": 1},
            "sampler": {"type": "tpe", "seed": 0, "constant_liar": False},  # as the others
            "space": SPACE,
        }
    )
    start = time.perf_counter()
    result = sweep(spec, workspace=folder / "orch", log_to_driver=False, report=False)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "loop_s": result.timings["loop_s"], "timings": result.timings}


def bench_optuna(parallel: int, trials: int, folder: Path) -> dict:
    storage = f"sqlite:///{folder}/optuna-p{parallel}.db"
    study = optuna.create_study(
        storage=storage, study_name="optuna", sampler=optuna.samplers.TPESampler(seed=0)
    )

    def objective(trial: optuna.Trial) -> float:
        params = {"x": trial.suggest_float("x", -5, 5), "y": trial.suggest_float("y", -5, 5)}
        return noop(params, local_trial(params))["loss"]

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_jobs=parallel)
    return {"wall_s": time.perf_counter() - start}


def bench_tune(parallel: int, trials: int, folder: Path) -> dict:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    def trainable(config: dict) -> dict:
        return {"loss": (config["x"] - 1.0) ** 2 + (config["y"] + 2.0) ** 2}

    storage = optuna.storages.RDBStorage(f"sqlite:///{folder}/tune-p{parallel}.db")
    searcher = OptunaSearch(
        metric="loss",
        mode="min",
        sampler=optuna.samplers.TPESampler(seed=0),
        storage=storage,
        study_name="tune",
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"x": tune.uniform(-5, 5), "y": tune.uniform(-5, 5)},
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=trials, max_concurrent_trials=parallel
        ),
        run_config=tune.RunConfig(storage_path=str(folder / f"tune-p{parallel}"), verbose=0),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    assert len(grid) == trials and not grid.errors
    return {"wall_s": wall}


@ray.remote(num_cpus=1)
def _idle() -> int:
    time.sleep(0.5)
    return os.getpid()


def warm_up() -> None:
    """Let Ray start its 64 worker processes before anything is timed (it starts them lazily
    or in the background after ray.init, which on 2 cores takes tens of seconds of CPU)."""
    pids = set(ray.get([_idle.remote() for _ in range(64)]))
    time.sleep(10)
    print(f"warmed up {len(pids)} Ray workers", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 8, 32, 64])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--tools", nargs="+", default=["orch", "optuna", "tune"])
    parser.add_argument("--out", type=Path, default=Path("bench/results/overhead.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(logging.WARNING)
    ray.init(num_cpus=64, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    warm_up()
    runners = {"orch": bench_orch, "optuna": bench_optuna, "tune": bench_tune}
    rows = []
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        for parallel in args.parallel:
            trials = trials_for(parallel, args.trials)
            for tool in args.tools:
                measured = runners[tool](parallel, trials, Path(tmp))
                measured.update(tool=tool, parallel=parallel, trials=trials)
                measured["trials_per_s"] = trials / measured["wall_s"]
                rows.append(measured)
                print(
                    f"{tool:7s} parallel={parallel:3d} trials={trials:4d} "
                    f"wall={measured['wall_s']:7.2f}s  {measured['trials_per_s']:7.2f} trials/s",
                    flush=True,
                )
    ray.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count()}
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    by = {(r["tool"], r["parallel"]): r for r in rows}
    print(
        "\n| parallel | trials | orch trials/s (trial loop only) | plain Optuna trials/s "
        "| Ray Tune trials/s | orch / Tune | orch / Optuna |"
    )
    print("|---|---|---|---|---|---|---|")
    for parallel in sorted({r["parallel"] for r in rows}):
        o, p, t = (by.get((k, parallel)) for k in ("orch", "optuna", "tune"))
        cells = [f"{x['trials_per_s']:.1f}" if x else "-" for x in (o, p, t)]
        if o:
            cells[0] += f" ({o['trials'] / o['loop_s']:.1f})"
        ratio_t = f"{o['trials_per_s'] / t['trials_per_s']:.1f}x" if o and t else "-"
        ratio_p = f"{o['trials_per_s'] / p['trials_per_s']:.2f}x" if o and p else "-"
        trials = (o or p or t)["trials"]
        print(f"| {parallel} | {trials} | {' | '.join(cells)} | {ratio_t} | {ratio_p} |")


if __name__ == "__main__":
    main()
