"""How TPE's ask cost grows with a study's history, per storage, and what each remedy buys.

Research for issue 16 (see docs/scaling.md). A study is prefilled with synthetic finished trials
shaped like orch's (5 params, 1 value, 1 intermediate value, 4 user attrs) and, like a sweep at
``--running`` parallel, that many RUNNING trials with 5 reports each. At each size the hub's
ask (``study.ask()`` + one suggest per param, as ``orchestrator.space.suggest``) is timed for
every sampler config, ``--asks`` times, wall and CPU, and the part of it spent in the storage's
``get_all_trials`` is measured by wrapping that method. ``cold_load_s`` is a fresh process's
first ``get_all_trials`` (what a resumed hub or ``orch status`` pays).

    python bench/tpe_history.py [--sizes 1000,2000,5000,10000] [--backends memory,sqlite,postgres]
                                [--configs default,no_liar,...] [--asks 20] [--running 64]
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from orchestrator._sqlite import tune_sqlite

optuna.logging.set_verbosity(optuna.logging.ERROR)

SPACE: dict[str, BaseDistribution] = {
    "x": FloatDistribution(-5.0, 5.0),
    "y": FloatDistribution(-5.0, 5.0),
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "depth": IntDistribution(1, 6),
    "shape": CategoricalDistribution(["bowl", "ridge", "saddle"]),
}


def objective(params: dict[str, Any]) -> float:
    """A cheap function of the params, so TPE has something to model."""
    bump = {"bowl": 0.0, "ridge": 0.5, "saddle": 1.0}[params["shape"]]
    return params["x"] ** 2 + (params["y"] - 1) ** 2 + abs(math.log10(params["lr"]) + 3) + bump


# A history-limiting wrapper ---------------------------------------------------------------------


class _StudyView:
    """A study as the wrapped sampler sees it: finished trials cut to a window."""

    def __init__(self, study: optuna.Study, cut: Callable[[list[FrozenTrial]], list[FrozenTrial]]):
        self._study = study
        self._cut = cut

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = self._cut(self._study._get_trials(False, None, use_cache))
        return [t for t in trials if states is None or t.state in states]

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states)


class RecentAndBestSampler(BaseSampler):
    """Wraps a sampler so it models only the ``recent`` latest and ``best`` best finished trials.

    Unfinished trials stay visible (TPE's constant liar needs the running ones). For a single
    objective TPE's "good" group is the best ``min(ceil(0.1 n), 25)`` trials, all of which are
    in ``best`` (>= 25), so exploitation is unchanged; the "bad" density is estimated from recent
    trials only. Multi-objective studies keep the ``recent`` window alone.
    """

    def __init__(self, base: BaseSampler, *, recent: int = 1000, best: int = 100) -> None:
        self._base = base
        self._recent = recent
        self._best = best
        self._minimize = True
        self._kept: tuple[int, set[int]] = (-1, set())  # (finished count, numbers kept)

    def _cut(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        finished = [t for t in trials if t.state.is_finished()]
        if len(finished) <= self._recent + self._best:
            return trials
        if self._kept[0] != len(finished):  # finished trials never change: once per new one
            keep = {t.number for t in finished[-self._recent :]}
            complete = [t for t in finished if t.state == TrialState.COMPLETE and t.values]
            if complete and len(complete[0].values) == 1:
                sign = 1.0 if self._minimize else -1.0
                best = heapq.nsmallest(self._best, complete, key=lambda t: sign * t.values[0])
                keep.update(t.number for t in best)
            self._kept = (len(finished), keep)
        keep = self._kept[1]
        return [t for t in trials if not t.state.is_finished() or t.number in keep]

    def _view(self, study: optuna.Study) -> Any:
        self._minimize = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
        return _StudyView(study, self._cut)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._base.infer_relative_search_space(self._view(study), trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._base.sample_relative(self._view(study), trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._base.sample_independent(
            self._view(study), trial, param_name, param_distribution
        )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._base.after_trial(study, trial, state, values)


def _tpe(**kwargs: Any) -> TPESampler:
    """orch's TPE (orchestrator/samplers.py with the spec's defaults), overridden by kwargs."""
    settings: dict[str, Any] = {
        "seed": 0,
        "n_startup_trials": 10,
        "multivariate": False,
        "group": False,
        "constant_liar": True,
        **kwargs,
    }
    return TPESampler(**settings)


CONFIGS: dict[str, Callable[[], BaseSampler]] = {
    "default": _tpe,  # orch's spec defaults: independent TPE with constant_liar
    "no_liar": lambda: _tpe(constant_liar=False),
    "ei8": lambda: _tpe(n_ei_candidates=8),
    "endpoints": lambda: _tpe(consider_endpoints=True),
    "multivariate": lambda: _tpe(multivariate=True),
    "window1000": lambda: RecentAndBestSampler(_tpe(), recent=1000, best=100),
    "multivariate_window1000": lambda: RecentAndBestSampler(
        _tpe(multivariate=True), recent=1000, best=100
    ),
    "random": lambda: optuna.samplers.RandomSampler(seed=0),
}


# Studies ---------------------------------------------------------------------------------------


def synthetic(rng: random.Random, number: int) -> FrozenTrial:
    """A finished trial like one orch records."""
    params: dict[str, Any] = {
        "x": rng.uniform(-5, 5),
        "y": rng.uniform(-5, 5),
        "lr": 10 ** rng.uniform(-5, -1),
        "depth": rng.randint(1, 6),
        "shape": rng.choice(["bowl", "ridge", "saddle"]),
    }
    value = objective(params)
    begun = dt.datetime(2026, 1, 1) + dt.timedelta(seconds=number)
    return FrozenTrial(
        number=number,
        state=TrialState.COMPLETE,
        value=value,
        datetime_start=begun,
        datetime_complete=begun + dt.timedelta(seconds=1),
        params=params,
        distributions=SPACE,
        user_attrs={
            "mlflow_run_id": f"{number:032x}",
            "orch.attempts": 1,
            "orch.duration_s": 0.05,
            "orch.node_ip": "127.0.0.1",
        },
        system_attrs={},
        intermediate_values={0: value},
        trial_id=number,
    )


def suggest_all(trial: optuna.Trial) -> dict[str, Any]:
    """One suggest per param, as orch's hub does."""
    return {
        "x": trial.suggest_float("x", -5.0, 5.0),
        "y": trial.suggest_float("y", -5.0, 5.0),
        "lr": trial.suggest_float("lr", 1e-5, 1e-1, log=True),
        "depth": trial.suggest_int("depth", 1, 6),
        "shape": trial.suggest_categorical("shape", ["bowl", "ridge", "saddle"]),
    }


def fill(study: optuna.Study, trials: list[FrozenTrial]) -> None:
    """Add finished trials: ``add_trials``, or for RDB storages bulk inserts into its tables.

    ``add_trials`` commits each trial alone after ~12 statements and a count of the study's
    trials: 10,000 of them take many minutes. The rows written here are the ones it writes.
    """
    backend = getattr(study._storage, "_backend", None)
    if backend is None:
        study.add_trials(trials)
        return
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from sqlalchemy import func, insert, select

    finite = models.TrialValueModel.TrialValueType.FINITE
    finite_step = models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
    with backend.engine.begin() as conn:
        trials_table = models.TrialModel.__table__
        count = select(func.count()).where(trials_table.c.study_id == study._study_id)
        first = conn.execute(count).scalar_one()
        ids = (
            conn.execute(
                insert(trials_table).returning(
                    trials_table.c.trial_id, sort_by_parameter_order=True
                ),
                [
                    {
                        "number": first + i,
                        "study_id": study._study_id,
                        "state": TrialState.COMPLETE,
                        "datetime_start": t.datetime_start,
                        "datetime_complete": t.datetime_complete,
                    }
                    for i, t in enumerate(trials)
                ],
            )
            .scalars()
            .all()
        )
        pairs = list(zip(ids, trials, strict=True))
        conn.execute(
            insert(models.TrialParamModel.__table__),
            [
                {
                    "trial_id": tid,
                    "param_name": name,
                    "param_value": t.distributions[name].to_internal_repr(value),
                    "distribution_json": distribution_to_json(t.distributions[name]),
                }
                for tid, t in pairs
                for name, value in t.params.items()
            ],
        )
        conn.execute(
            insert(models.TrialValueModel.__table__),
            [
                {"trial_id": tid, "objective": 0, "value": t.value, "value_type": finite}
                for tid, t in pairs
            ],
        )
        conn.execute(
            insert(models.TrialIntermediateValueModel.__table__),
            [
                {
                    "trial_id": tid,
                    "step": step,
                    "intermediate_value": value,
                    "intermediate_value_type": finite_step,
                }
                for tid, t in pairs
                for step, value in t.intermediate_values.items()
            ],
        )
        conn.execute(
            insert(models.TrialUserAttributeModel.__table__),
            [
                {"trial_id": tid, "key": key, "value_json": json.dumps(value)}
                for tid, t in pairs
                for key, value in t.user_attrs.items()
            ],
        )


@contextmanager
def timing_reads(study: optuna.Study) -> Iterator[list[float]]:
    """Seconds spent in the study storage's ``get_all_trials`` (appended per call)."""
    storage = study._storage
    original = storage.get_all_trials
    spent: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    storage.get_all_trials = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        del storage.get_all_trials


def measure(study: optuna.Study, sampler: BaseSampler, asks: int) -> dict[str, float]:
    """Median wall/CPU ms of ask+suggest (and of its storage reads), and of tell."""
    study.sampler = sampler
    trial = study.ask()  # warm-up (first call of this sampler)
    study.tell(trial, objective(suggest_all(trial)))
    walls, cpus, reads, tells, calls = [], [], [], [], []
    with timing_reads(study) as spent:
        for _ in range(asks):
            before = len(spent)
            wall, cpu = time.perf_counter(), time.process_time()
            trial = study.ask()
            params = suggest_all(trial)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            reads.append(sum(spent[before:]))
            calls.append(len(spent) - before)
            wall = time.perf_counter()
            study.tell(trial, objective(params))
            tells.append(time.perf_counter() - wall)
    ms = 1000.0
    return {
        "ask_ms_p50": round(statistics.median(walls) * ms, 2),
        "ask_ms_p95": round(sorted(walls)[int(0.95 * (len(walls) - 1))] * ms, 2),
        "ask_cpu_ms_p50": round(statistics.median(cpus) * ms, 2),
        "storage_read_ms_p50": round(statistics.median(reads) * ms, 2),
        "storage_reads_per_ask": statistics.median(calls),
        "tell_ms_p50": round(statistics.median(tells) * ms, 2),
    }


def open_backend(name: str, folder: Path, server: Any) -> tuple[Any, Callable[[], Any]]:
    """The storage (as ``create_study`` takes it) and a factory of fresh ones (cold loads)."""
    if name == "memory":
        storage = optuna.storages.InMemoryStorage()
        return storage, lambda: storage
    if name == "sqlite":
        tune_sqlite()
        url = f"sqlite:///{folder / 'tpe.db'}"
        kwargs = {"connect_args": {"timeout": 60}}
    else:
        url = server.url(server.create_database())
        kwargs = {}
    make = lambda: optuna.storages.get_storage(  # noqa: E731
        optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    )
    return make(), make


def run_backend(
    name: str, sizes: list[int], configs: list[str], asks: int, running: int, server: Any
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="orch-tpe-") as tmp:
        storage, fresh = open_backend(name, Path(tmp), server)
        study = optuna.create_study(storage=storage, study_name="tpe", sampler=_tpe())
        for _ in range(running):  # the trials a parallel sweep has in flight
            trial = study.ask()
            suggest_all(trial)
            for step in range(5):
                trial.report(1.0, step)
        finished = 0
        for size in sizes:
            started = time.perf_counter()
            fill(study, [synthetic(rng, n) for n in range(finished, size)])
            finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            fill_s = time.perf_counter() - started
            cold = time.perf_counter()
            loaded = fresh()
            loaded.get_all_trials(loaded.get_study_id_from_name("tpe"), deepcopy=False)
            cold_s = time.perf_counter() - cold
            for config in configs:
                row = {"backend": name, "finished": finished, "config": config}
                row.update(measure(study, CONFIGS[config](), asks))
                row["cold_load_s"] = round(cold_s, 3) if name != "memory" else 0.0
                row["fill_s"] = round(fill_s, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
                finished += asks + 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,5000,10000")
    parser.add_argument("--backends", default="memory,sqlite,postgres")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--asks", type=int, default=20)
    parser.add_argument("--running", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("bench/results/tpe_history.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    configs = args.configs.split(",")
    rows: list[dict[str, Any]] = []
    server = None
    try:
        for backend in args.backends.split(","):
            if backend == "postgres" and server is None:
                from tests.postgres import PostgresServer

                # Durable like a real server, commits as sqlite's WAL + synchronous=NORMAL.
                server = PostgresServer(fast=False, settings={"synchronous_commit": "off"})
                server.start()
            rows += run_backend(backend, sizes, configs, args.asks, args.running, server)
    finally:
        if server is not None:
            server.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"asks": args.asks, "running": args.running, "rows": rows}))


if __name__ == "__main__":
    main()
