"""The study hub's ask-and-tell cycle alone (no Ray, no MLflow) on a study already holding N trials.

Fills a study with ``N`` finished trials (random params and values), then runs the hub's cycle
with 64 trials in flight: an ask through ``HubStorage`` (one snapshot, the default history
window, TPE with the constant liar, the 5-parameter space of bench/scale.py), then the oldest
running trial's user attrs and its tell, as ``StudyHub.end_trial`` does. Prints milliseconds per
cycle and per cycle in SQL statements (the five slowest statements too), per size and store.

    python bench/hub_cycle.py [--sizes 1000,8000] [--stores sqlite,postgres] [--cycles 150]
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna
import sqlalchemy
from optuna.storages import get_storage
from optuna.trial import create_trial

from orchestrator._retry import Outage
from orchestrator._sqlite import tune_sqlite
from orchestrator.study._snapshot import HistoryWindow, HubStorage
from orchestrator.study._storage import open_storage

RUNNING = 64
D = optuna.distributions
SPACE = {
    "x": D.FloatDistribution(-5, 5),
    "y": D.FloatDistribution(-5, 5),
    "lr": D.FloatDistribution(1e-5, 1e-1, log=True),
    "depth": D.IntDistribution(1, 6),
    "shape": D.CategoricalDistribution(["bowl", "ridge", "saddle"]),
}


def sql_timer(engine: sqlalchemy.Engine) -> dict[str, list[float]]:
    """Calls and seconds per statement text on ``engine`` from now on."""
    spent: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])

    @sqlalchemy.event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["started"] = time.perf_counter()

    @sqlalchemy.event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        entry = spent[re.sub(r"\s+", " ", statement)[:100]]
        entry[0] += 1
        entry[1] += time.perf_counter() - conn.info["started"]

    return spent


def measure(url: str, size: int, cycles: int) -> None:
    base = get_storage(open_storage(url))
    storage = HubStorage(
        base, Outage("the study", deadline_s=60), window=HistoryWindow(recent=1000, best=100)
    )
    sampler = optuna.samplers.TPESampler(seed=0, constant_liar=True)
    study = optuna.create_study(storage=storage, sampler=sampler, study_name="hub")
    study_id = storage.get_study_id_from_name("hub")
    rng = random.Random(0)
    study.add_trials([
        create_trial(params={"x": rng.uniform(-5, 5), "y": rng.uniform(-5, 5),
                             "lr": 10 ** rng.uniform(-5, -1), "depth": rng.randint(1, 6),
                             "shape": rng.choice(["bowl", "ridge", "saddle"])},
                     distributions=SPACE, value=rng.random())
        for _ in range(size)
    ])  # fmt: skip
    running: collections.deque[int] = collections.deque()

    def cycle(step: int) -> None:
        with storage.asking(study_id):
            number = study.ask(SPACE).number
        storage.get_trial_id_from_study_id_trial_number(study_id, number)
        running.append(number)
        if len(running) > RUNNING:
            ended = running.popleft()
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, ended)
            for key in ("run_id", "attempts", "duration_s"):
                storage.set_trial_user_attr(trial_id, key, "v")
            study.tell(ended, float(step % 97), skip_if_finished=True)

    for step in range(RUNNING + 6):  # fill the flight
        cycle(step)
    spent = sql_timer(base._backend.engine)  # type: ignore[attr-defined]
    started = time.perf_counter()
    for step in range(cycles):
        cycle(step)
    per_cycle = (time.perf_counter() - started) / cycles * 1e3
    sql = sum(seconds for _, seconds in spent.values()) / cycles * 1e3
    print(f"{size} trials: {per_cycle:.1f} ms per cycle, of it SQL {sql:.1f} ms", flush=True)
    for text, (calls, seconds) in sorted(spent.items(), key=lambda kv: -kv[1][1])[:5]:
        print(f"  {seconds / cycles * 1e3:6.2f} ms {calls / cycles:4.1f}x  {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,8000")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--cycles", type=int, default=150)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tune_sqlite()
    for store in args.stores.split(","):
        for size in map(int, args.sizes.split(",")):
            print(f"{store}:", end=" ")
            if store == "postgres":
                from tests.postgres import PostgresServer

                server = PostgresServer()  # fsync off: the fill is ~4 min at 8,000 trials
                server.start()
                try:
                    measure(server.url(server.create_database()), size, args.cycles)
                finally:
                    server.close()
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    measure(f"sqlite:///{tmp}/hub.db", size, args.cycles)


if __name__ == "__main__":
    main()
