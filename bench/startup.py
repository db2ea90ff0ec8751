"""Start-up: what a person waits for, as whole processes, against a bare Ray and the peers.

Each case is one process started from scratch, timed from launch to exit, repeated (the cases
interleaved so that a noisy neighbour hits all of them alike); min and median are reported.

- ``ray``: ``ray.init()`` (no dashboard, as orch starts it), one task, ``ray.shutdown()``.
- ``orch-new``: ``orch sweep bench/startup-noop.yaml`` (one no-op trial) in a new workspace.
- ``orch-again``: the same in a workspace that already holds an earlier sweep (a new study).
- ``orch-help``: ``orch --help``.
- ``optuna``: plain Optuna, one no-op trial on a new sqlite storage (no Ray, no MLflow).
- ``tune``: Ray Tune, one no-op trial (its own ``ray.init``).

Goals (issue 13): orch-new and orch-again at most 2 s above ``ray``; orch-help <= 0.5 s.

    python bench/startup.py [--repeat 5] [--cases ray orch-new ...] [--code DIR] [--out FILE]

``--code DIR`` runs another checkout's orch (put first on PYTHONPATH), e.g. to measure the
code before a change with the same interpreter and packages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "bench" / "startup-noop.yaml"
ORCH = str(Path(sys.executable).with_name("orch"))

BARE_RAY = """
import ray
ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
assert ray.get(ray.remote(lambda: 1).remote()) == 1
ray.shutdown()
"""

PLAIN_OPTUNA = """
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(storage=f"sqlite:///{sys.argv[1]}/optuna.db", study_name="noop")
study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 1) ** 2, n_trials=1)
"""

RAY_TUNE = """
import sys, ray
from ray import tune
ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
tuner = tune.Tuner(
    lambda config: {"loss": (config["x"] - 1.0) ** 2},
    param_space={"x": tune.uniform(-5, 5)},
    tune_config=tune.TuneConfig(num_samples=1),
    run_config=tune.RunConfig(storage_path=sys.argv[1] + "/tune", verbose=0),
)
assert not tuner.fit().errors
ray.shutdown()
"""


def command(case: str, folder: Path, rep: int) -> list[str]:
    """The command line of one repetition of ``case``, with its own files under ``folder``."""
    if case == "ray":
        return [sys.executable, "-c", BARE_RAY]
    if case == "orch-new":
        return [ORCH, "sweep", str(SPEC), "--workspace", str(folder / f"new-{rep}")]
    if case == "orch-again":
        return [
            ORCH,
            "sweep",
            str(SPEC),
            "--workspace",
            str(folder / "again"),
            "--set",
            f"name=again-{rep}",
        ]
    if case == "orch-help":
        return [ORCH, "--help"]
    if case == "optuna":
        (folder / f"optuna-{rep}").mkdir()
        return [sys.executable, "-c", PLAIN_OPTUNA, str(folder / f"optuna-{rep}")]
    if case == "tune":
        return [sys.executable, "-c", RAY_TUNE, str(folder / f"tune-{rep}")]
    raise ValueError(case)


def settle(folder: Path, timeout_s: float = 120.0) -> None:
    """Wait until no process started for a case is left (e.g. orch's background report)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = []
        for proc in psutil.process_iter(["cmdline"]):
            with_folder = any(str(folder) in part for part in proc.info["cmdline"] or [])
            if with_folder and proc.pid != os.getpid():
                busy.append(proc.pid)
        if not busy:
            return
        time.sleep(0.2)
    raise RuntimeError(f"processes of {folder} still running after {timeout_s:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["ray", "orch-new", "orch-again", "orch-help", "optuna", "tune"],
    )
    parser.add_argument("--code", type=Path, help="checkout whose orch to run (PYTHONPATH)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/startup.json"))
    args = parser.parse_args()
    code = (args.code or REPO).resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(code), str(REPO)]))}
    env.pop("RAY_ADDRESS", None)
    times: dict[str, list[float]] = {case: [] for case in args.cases}
    with tempfile.TemporaryDirectory(prefix="orch-startup-") as tmp:
        folder = Path(tmp)
        if "orch-again" in args.cases:  # the workspace an earlier sweep left
            first = command("orch-again", folder, -1)
            subprocess.run(first, cwd=folder, env=env, check=True, capture_output=True)
            settle(folder)
        for rep in range(args.repeat):
            for case in args.cases:
                argv = command(case, folder, rep)
                start = time.perf_counter()
                done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - start
                if done.returncode != 0:
                    sys.exit(f"{case} failed ({done.returncode}):\n{done.stderr[-3000:]}")
                times[case].append(wall)
                print(f"{case:11s} rep {rep}: {wall:6.2f} s", flush=True)
                settle(folder)
        shutil.rmtree(folder / "again", ignore_errors=True)
    rows = {
        case: {"min_s": min(ts), "median_s": statistics.median(ts), "runs_s": ts}
        for case, ts in times.items()
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "code": str(code),
        "commit": _commit(code),
    }
    args.out.write_text(json.dumps({"machine": machine, "cases": rows}, indent=2))
    print_table(rows)


def _commit(code: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip()


def print_table(rows: dict[str, dict[str, float]]) -> None:
    print("\n| case | min (s) | median (s) | median - ray (s) |")
    print("|---|---|---|---|")
    ray_median = rows.get("ray", {}).get("median_s")
    for case, row in rows.items():
        above = "-"
        if ray_median is not None and case.startswith("orch-") and case != "orch-help":
            above = f"{row['median_s'] - ray_median:+.2f}"
        print(f"| {case} | {row['min_s']:.2f} | {row['median_s']:.2f} | {above} |")


if __name__ == "__main__":
    main()
