"""Time to target on a DEQ digits sweep whose space holds configurations that fail to converge
(no spectral normalisation with initial weights scaled 3-4x, max_iter up to 200), with and without
`stop_when`, same sampler and seed; and Ray Tune with the same rule as a Stopper.

Every arm runs `jobs.deq.train:run` unchanged with TPE (seeded, 10 start-up trials, so the first 10
configurations are the same in both orch arms), the same space, trial budget, epochs and
parallelism, no pruner. In the space, `norm: none` with `init_scale` above ~3 keeps the mean
relative residual at 0.1-0.45 (never converges, yet below the job's divergence threshold 0.5);
smaller scales or `norm: spectral` converge. The rule is the one the shipped DEQ
specs use: stop a trial whose mean relative test residual stays above 0.1 for 2 epochs in a
row. Per arm: wall time until a trial first reports test_error <= target, total wall time,
epochs trained, epochs trained while the residual was above 0.1, best test_error, trial states.

    python bench/stop_when.py [--trials 20] [--parallel 2] [--epochs 8] [--target 0.05]
                              [--seeds 2 5] [--arms orch orch+stop_when tune+stopper]
    python bench/stop_when.py --table bench/results/stop_when.json [--target 0.035]

The raw JSON also holds every trial's params and per-epoch (seconds, test_error, residual).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import ray
from mlflow import MlflowClient

from jobs.deq.train import run as train
from orchestrator import sweep
from orchestrator.spec import Spec
from orchestrator.trial import Trial

RULE = {"metric": "residual", "above": 0.1, "patience": 2}
FIXED = {"model": "deq", "batch_size": 64, "tol": 1e-4}
SPACE = {
    "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
    "width": {"type": "categorical", "choices": [16, 32]},
    "solver": {"type": "categorical", "choices": ["anderson", "forward"]},
    "norm": {"type": "categorical", "choices": ["spectral", "none"]},
    "init_scale": {"type": "float", "low": 2.5, "high": 4.0},
    "max_iter": {"type": "int", "low": 40, "high": 200, "log": True},
}
ARMS = ("orch", "orch+stop_when", "tune+stopper")
STARTUP = 10


def run_orch(args: argparse.Namespace, folder: Path, seed: int, rules: list[Any]) -> dict[str, Any]:
    name = f"stop-when-{seed}-{len(rules)}"
    spec = Spec.model_validate(
        {
            "name": name,
            "job": "jobs.deq.train:run",
            "objective": {"metric": "test_error"},
            "trials": args.trials,
            "parallel": args.parallel,
            "sampler": {"type": "tpe", "seed": seed, "n_startup_trials": STARTUP},
            "space": SPACE,
            "fixed": {**FIXED, "epochs": args.epochs},
            "stop_when": rules,
        }
    )
    start = time.time()
    result = sweep(spec, workspace=folder, log_to_driver=False, report=False)
    total = time.time() - start
    client = MlflowClient(result.tracking_uri)
    study = optuna.load_study(study_name=name, storage=result.storage)
    curves = []
    params = []
    for trial in study.trials:
        params.append({**trial.params, "state": trial.state.name})
        run_id = trial.user_attrs["mlflow_run_id"]
        # The returned metrics are logged again at the last step: keep each step's first entry.
        errors = _first_per_step(client.get_metric_history(run_id, "test_error"))
        residuals = _first_per_step(client.get_metric_history(run_id, "residual"))
        curves.append(
            [
                (
                    m.timestamp / 1000 - start,
                    m.value,
                    residuals[step].value if step in residuals else 0.0,
                )
                for step, m in sorted(errors.items())
            ]
        )
    states = {
        "complete": sum(t.state.name == "COMPLETE" for t in study.trials),
        "stopped_by_rule": sum("orch.stop_rule" in t.user_attrs for t in study.trials),
        "diverged": sum(bool(t.user_attrs.get("diverged")) for t in study.trials),
        "failed": sum(t.state.name == "FAIL" for t in study.trials),
    }
    return _summary(args, curves, total, states, params)


def _first_per_step(history: list[Any]) -> dict[int, Any]:
    """MLflow metric history -> {step: the earliest entry at that step}."""
    first: dict[int, Any] = {}
    for m in sorted(history, key=lambda m: m.timestamp):
        first.setdefault(m.step, m)
    return first


class _TuneSink:
    """The Trial API's sink for a Ray Tune function trainable: reports go to tune.report."""

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        from ray import tune

        tune.report({**metrics, "epoch": step + 1, "wall": time.time()})
        return False

    def log_artifact(self, name: str, data: bytes, *, part: int = 0, last: bool = True) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def close(self) -> None: ...


def _tune_trainable(config: dict[str, Any]) -> None:
    trial = Trial(number=0, params=config, sink=_TuneSink())
    train(dict(config), trial)
    trial.close()


def _rule_stopper() -> Any:
    """RULE as a Ray Tune Stopper: what a Tune user writes by hand for the same behaviour."""
    from ray import tune

    class RuleStopper(tune.Stopper):
        def __init__(self) -> None:
            self.streaks: dict[str, int] = {}

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            held = result.get(RULE["metric"], 0.0) > RULE["above"]
            self.streaks[trial_id] = self.streaks.get(trial_id, 0) + 1 if held else 0
            return self.streaks[trial_id] >= RULE["patience"]

        def stop_all(self) -> bool:
            return False

    return RuleStopper()


def run_tune(args: argparse.Namespace, folder: Path, seed: int) -> dict[str, Any]:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    space: dict[str, Any] = {
        "lr": tune.loguniform(1e-3, 3e-2),
        "width": tune.choice([16, 32]),
        "solver": tune.choice(["anderson", "forward"]),
        "norm": tune.choice(["spectral", "none"]),
        "init_scale": tune.uniform(2.5, 4.0),
        "max_iter": tune.lograndint(40, 201),
        **FIXED,
        "epochs": args.epochs,
    }
    searcher = OptunaSearch(
        metric="test_error",
        mode="min",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP, constant_liar=True),
    )
    tuner = tune.Tuner(
        tune.with_resources(_tune_trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="test_error",
            mode="min",
            search_alg=searcher,
            num_samples=args.trials,
            max_concurrent_trials=args.parallel,
        ),
        run_config=tune.RunConfig(
            storage_path=str(folder / "tune"), verbose=0, stop=_rule_stopper()
        ),
    )
    start = time.time()
    grid = tuner.fit()
    total = time.time() - start
    curves = []
    params = []
    stopped = 0
    for result in grid:
        frame = result.metrics_dataframe
        if frame is None or frame.empty:
            continue
        columns = (frame["wall"] - start, frame["test_error"], frame["residual"])
        rows = list(zip(*columns, strict=True))
        curves.append(rows)
        params.append({k: result.config[k] for k in space if k not in FIXED and k != "epochs"})
        late = [r for _, _, r in rows[-RULE["patience"] :]]
        stopped += (
            result.error is None
            and len(rows) < args.epochs
            and all(r > RULE["above"] for r in late)
        )
    states = {"stopped_by_rule": stopped, "errors": len(grid.errors)}
    return _summary(args, curves, total, states, params)


def _summary(
    args: argparse.Namespace,
    curves: list[list[tuple[float, float, float]]],
    total: float,
    states: dict[str, int],
    params: list[dict[str, Any]],
) -> dict[str, Any]:
    """``curves``: per trial, (seconds since start, test_error, residual) per epoch;
    ``params``: per trial, its params (and state where known), in the same order."""
    hits = [t for curve in curves for t, err, _ in curve if err <= args.target]
    points = [p for curve in curves for p in curve]
    return {
        "time_to_target_s": min(hits) if hits else None,
        "total_s": total,
        "epochs_trained": len(points),
        "epochs_not_converging": sum(res > RULE["above"] for _, _, res in points),
        "best_test_error": min((err for _, err, _ in points), default=None),
        "trials": len(curves),
        **states,
        "per_trial": [
            {"params": p, "epochs": [[round(t, 2), err, res] for t, err, res in curve]}
            for p, curve in zip(params, curves, strict=True)
        ],
    }


def _write(args: argparse.Namespace, found: dict[str, dict[str, Any]]) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    setup = {"args": vars(args) | {"out": str(args.out)}, "rule": RULE, "space": SPACE}
    args.out.write_text(json.dumps({**setup, "fixed": FIXED, **found}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--target", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--out", type=Path, default=Path("bench/results/stop_when.json"))
    parser.add_argument(
        "--table", type=Path, help="only print the table of this saved run, for --target"
    )
    args = parser.parse_args()
    if args.table:
        saved = json.loads(args.table.read_text())
        _table({k: v for k, v in saved.items() if " seed " in k}, args.target)
        return
    ray.init(
        num_cpus=args.parallel,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    found: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="orch-stop-when-") as tmp:
        # Start Ray's worker processes (torch imported) before anything is timed.
        warm_up = argparse.Namespace(**{**vars(args), "trials": args.parallel, "epochs": 1})
        run_orch(warm_up, Path(tmp) / "warm-up", 0, [])
        for i, seed in enumerate(args.seeds):
            # Alternate the order of the arms between seeds: neither always goes first.
            for arm in args.arms if i % 2 == 0 else args.arms[::-1]:
                folder = Path(tmp) / f"{arm}-{seed}"
                if arm == "tune+stopper":
                    found[f"{arm} seed {seed}"] = run_tune(args, folder, seed)
                else:
                    rules = [RULE] if arm == "orch+stop_when" else []
                    found[f"{arm} seed {seed}"] = run_orch(args, folder, seed, rules)
                brief = {k: v for k, v in found[f"{arm} seed {seed}"].items() if k != "per_trial"}
                print(arm, seed, json.dumps(brief), flush=True)
                _write(args, found)  # after every arm: a cut-short run keeps what it measured
    ray.shutdown()
    _table(found, args.target)


def _table(found: dict[str, dict[str, Any]], target: float) -> None:
    """Print the arms as a Markdown table, time to ``target`` taken from the per-trial curves."""
    print(
        f"\n| arm | seed | time to test_error <= {target:g} (s) | total (s) | epochs trained "
        "| epochs with residual > 0.1 | stopped by the rule | diverged | best test_error |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = sorted(found.items(), key=lambda kv: (int(kv[0].rsplit(" ", 1)[1]), kv[0]))
    for key, r in rows:
        arm, seed = key.rsplit(" seed ", 1)
        hits = [t for trial in r["per_trial"] for t, err, _ in trial["epochs"] if err <= target]
        ttt = f"{min(hits):.0f}" if hits else "not reached"
        diverged = r.get("diverged", r.get("errors", 0))
        print(
            f"| {arm} | {seed} | {ttt} | {r['total_s']:.0f} | {r['epochs_trained']} "
            f"| {r['epochs_not_converging']} | {r['stopped_by_rule']} | {diverged} "
            f"| {r['best_test_error']:.4f} |"
        )


if __name__ == "__main__":
    main()
