"""Start-up: what a person waits for, as whole processes, against a bare Ray and the peers.

Each case is one process started from scratch, timed from launch to exit, repeated (the cases
interleaved so that a noisy neighbour hits all of them alike, in a new order each repetition,
and each started only once the processes of the one before, Ray's included, are gone); min and
median are reported.

- ``ray``: ``ray.init()``, one task, ``ray.shutdown()``.
- ``ray-nodash``: the same without the dashboard (what orch asks of a local Ray).
- ``orch-new``: ``orch sweep bench/startup-noop.yaml`` (one no-op trial) in a new workspace.
- ``orch-again``: the same in a workspace that already holds an earlier sweep (a new study).
- ``orch-help``: ``orch --help``.
- ``orch-best``: ``orch best`` of the study an earlier sweep left (reads Optuna and MLflow).
- ``optuna``: plain Optuna, one no-op trial on a new sqlite storage (no Ray, no MLflow).
- ``tune``: Ray Tune, one no-op trial (its own ``ray.init``).

Goals (issue 13): orch-new and orch-again at most 2 s above ``ray``; orch-help <= 0.5 s.

    python bench/startup.py [--repeat 5] [--cases ray orch-new ...] [--code LABEL=DIR ...]

``--code LABEL=DIR`` (repeatable) runs the orch cases with another checkout's orch (put first
on PYTHONPATH) too, interleaved with this one's (label ``now``): e.g. the code before a change,
with the same interpreter and packages, in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "bench" / "startup-noop.yaml"
_RAY = importlib.util.find_spec("ray")  # found, not imported: this process starts no Ray
assert _RAY is not None and _RAY.submodule_search_locations
#: Ray's package folder, in the command line of each of its daemons and workers.
RAY_PACKAGE: str = _RAY.submodule_search_locations[0]
#: The ``orch`` console script, as pip writes it, calling the entry point of the orch found on
#: PYTHONPATH (``cli.run``; ``cli.main`` in code from before ``run`` existed).
ORCH = [
    sys.executable,
    "-c",
    "import sys; from orchestrator import cli; sys.argv[0] = 'orch'; "
    "sys.exit(getattr(cli, 'run', cli.main)())",
]

BARE_RAY = """
import sys, ray
ray.init(**({"include_dashboard": False} if sys.argv[1:] == ["nodash"] else {}))
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
    if case == "ray-nodash":
        return [sys.executable, "-c", BARE_RAY, "nodash"]
    if case == "orch-new":
        return [*ORCH, "sweep", str(SPEC), "--workspace", str(folder / f"new-{rep}")]
    if case == "orch-again":
        again = ["--workspace", str(folder / "again"), "--set", f"name=again-{rep}"]
        return [*ORCH, "sweep", str(SPEC), *again]
    if case == "orch-help":
        return [*ORCH, "--help"]
    if case == "orch-best":
        return [*ORCH, "best", "again--1", "--workspace", str(folder / "again")]
    if case == "optuna":
        (folder / f"optuna-{rep}").mkdir()
        return [sys.executable, "-c", PLAIN_OPTUNA, str(folder / f"optuna-{rep}")]
    if case == "tune":
        return [sys.executable, "-c", RAY_TUNE, str(folder / f"tune-{rep}")]
    raise ValueError(case)


def processes(*markers: str) -> set[int]:
    """The PIDs of this user's processes, but this one, with any of ``markers`` in their
    command line."""
    found = set()
    for proc in psutil.process_iter(["cmdline", "uids"]):
        mine = proc.info["uids"] is not None and proc.info["uids"].real == os.getuid()
        line = proc.info["cmdline"] or []
        if mine and proc.pid != os.getpid() and any(m in part for m in markers for part in line):
            found.add(proc.pid)
    return found


def settle(folder: Path, ignore: set[int], timeout_s: float = 120.0) -> None:
    """Wait until no process started for a case is left: orch's background report, and the
    Ray a case stopped (a bare ``ray.shutdown()`` returns while its autoscaler monitor still
    takes a second to die), so that it does not eat into the next case's time. Ray processes
    in ``ignore`` (there before the bench) are not waited for."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not processes(str(folder), RAY_PACKAGE) - ignore:
            return
        time.sleep(0.2)
    raise RuntimeError(f"processes of {folder} still running after {timeout_s:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["ray", "ray-nodash", "orch-new", "orch-again", "orch-help", "optuna", "tune"],
    )
    parser.add_argument("--code", action="append", default=[], help="LABEL=DIR of another orch")
    parser.add_argument("--out", type=Path, default=Path("bench/results/startup.json"))
    args = parser.parse_args()
    others = (given.partition("=") for given in args.code)
    codes = {"now": REPO, **{label: Path(folder).resolve() for label, _, folder in others}}
    runs: list[tuple[str, str, dict[str, str]]] = []  # (name, case, environment)
    for case in args.cases:
        for label, code in codes.items() if case.startswith("orch-") else [("", REPO)]:
            path = os.pathsep.join(dict.fromkeys([str(code), str(REPO)]))
            env = {**os.environ, "PYTHONPATH": path}
            env.pop("RAY_ADDRESS", None)
            name = f"{case}@{label}" if label and len(codes) > 1 else case
            runs.append((name, case, env))
    times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    before = processes(RAY_PACKAGE)
    with tempfile.TemporaryDirectory(prefix="orch-startup-") as tmp:
        for name, case, env in runs:
            (Path(tmp) / name).mkdir()
            if case in ("orch-again", "orch-best"):  # the workspace an earlier sweep left
                first = command("orch-again", Path(tmp) / name, -1)
                subprocess.run(first, cwd=tmp, env=env, check=True, capture_output=True)
                settle(Path(tmp), before)
        for rep in range(args.repeat):
            # a new order each repetition (the same for every run of the bench)
            for name, case, env in random.Random(rep).sample(runs, len(runs)):
                argv = command(case, Path(tmp) / name, rep)
                start = time.perf_counter()
                done = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - start
                if done.returncode != 0:
                    sys.exit(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
                times[name].append(wall)
                print(f"{name:18s} rep {rep}: {wall:6.2f} s", flush=True)
                settle(Path(tmp), before)
    rows = {
        name: {"min_s": min(ts), "median_s": statistics.median(ts), "runs_s": ts}
        for name, ts in times.items()
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "codes": {label: f"{code} ({_commit(code)})" for label, code in codes.items()},
        "command": " ".join(sys.argv),
    }
    args.out.write_text(json.dumps({"machine": machine, "cases": rows}, indent=2))
    print_table(rows)


def _commit(code: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip()


def print_table(rows: dict[str, dict[str, float]]) -> None:
    print("\n| case | min (s) | median (s) | min - ray min (s) | median - ray median (s) |")
    print("|---|---|---|---|---|")
    ray = rows.get("ray")
    for name, row in rows.items():
        above = ["-", "-"]
        if ray and name.startswith("orch-") and not name.startswith("orch-help"):
            above = [f"{row[k] - ray[k]:+.2f}" for k in ("min_s", "median_s")]
        print(f"| {name} | {row['min_s']:.2f} | {row['median_s']:.2f} | {' | '.join(above)} |")


if __name__ == "__main__":
    main()
