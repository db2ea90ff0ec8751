"""The hub's reads during an ask (study/_snapshot.py): one snapshot of the study per ask, the
same suggestions as Optuna reading the database every time, and TPE's history window."""

from __future__ import annotations

import contextlib
import heapq
import random
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage, get_storage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from orchestrator._retry import Outage
from orchestrator.study._snapshot import HistoryWindow, HubStorage

RUNNING = 8


def run_study(storage: BaseStorage, asking: Any, trials: int = 40) -> list[dict[str, Any]]:
    """Ask and tell as the hub does with ``RUNNING`` trials in flight; the params asked."""
    study = optuna.create_study(
        storage=storage,
        study_name="snap",
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5, constant_liar=True),
    )
    study_id = storage.get_study_id_from_name("snap")
    asked, running = [], []
    for _ in range(trials):
        with asking(study_id):
            trial = study.ask()
            params = {
                "x": trial.suggest_float("x", -5, 5),
                "lr": trial.suggest_float("lr", 1e-5, 1e-1, log=True),
                "kind": trial.suggest_categorical("kind", ["a", "b", "c"]),
            }
        asked.append(params)
        running.append((trial, params))
        if len(running) == RUNNING:
            done, values = running.pop(0)
            study.tell(done, values["x"] ** 2 + {"a": 0, "b": 1, "c": 2}[values["kind"]])
    return asked


def study_reads(storage: RDBStorage) -> list[str]:
    """Every read of the study's trials from now on (a real engine event): what Optuna's
    ``get_all_trials`` sends, the trials of the study in order."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM trials" in statement and "ORDER BY trials.trial_id" in statement:
            seen.append(statement)

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", note)
    return seen


def test_one_read_per_ask_and_the_same_suggestions(tmp_path: Path) -> None:
    plain_rdb = RDBStorage(f"sqlite:///{tmp_path / 'plain.db'}")
    plain_reads = study_reads(plain_rdb)
    plain = run_study(get_storage(plain_rdb), asking=lambda _: contextlib.nullcontext())

    hub_rdb = RDBStorage(f"sqlite:///{tmp_path / 'hub.db'}")
    hub_reads = study_reads(hub_rdb)
    storage = HubStorage(get_storage(hub_rdb), Outage("the study", deadline_s=10))
    snapped = run_study(storage, asking=storage.asking)

    assert snapped == plain  # what the sampler saw is what it would have read
    assert len(hub_reads) == len(snapped)  # one read per ask (none per tell)
    assert len(plain_reads) > 2 * len(hub_reads)


def finished_study(values: list[float], running: int) -> optuna.Study:
    study = optuna.create_study()
    distribution = {"x": optuna.distributions.FloatDistribution(0, 100)}
    for value in values:
        study.add_trial(
            optuna.trial.create_trial(params={"x": value}, distributions=distribution, value=value)
        )
    for _ in range(running):
        study.ask(distribution)
    return study


def test_history_window_keeps_running_recent_and_best() -> None:
    values = [float(v) for v in [50, 3, 40, 1, 30, 2, 20, 60, 70, 80, 90, 95]]
    study = finished_study(values, running=2)
    trials = study.get_trials(deepcopy=False)
    kept = HistoryWindow(recent=4, best=3).cut(trials, study.directions)
    numbers = [t.number for t in kept]
    # Best three (values 1, 2, 3: trials 3, 5, 1), the four latest finished (8-11), running.
    assert numbers == [1, 3, 5, 8, 9, 10, 11, 12, 13]
    assert [t.state for t in kept][-2:] == [TrialState.RUNNING] * 2
    # Up to recent + best finished trials, nothing is cut.
    assert HistoryWindow(recent=10, best=2).cut(trials, study.directions) == trials


def test_history_window_keeps_the_best_of_each_objective() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    distribution = {"x": optuna.distributions.FloatDistribution(0, 100)}
    for first, second in [(5, 5), (1, 1), (9, 9), (4, 4), (6, 6), (7, 7), (8, 2)]:
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": first}, distributions=distribution, values=[first, second]
            )
        )
    kept = HistoryWindow(recent=2, best=1).cut(study.get_trials(), study.directions)
    assert [t.number for t in kept] == [1, 2, 5, 6]  # min of the 1st, max of the 2nd, recent


def test_the_window_applies_inside_an_ask_only(tmp_path: Path) -> None:
    rdb = RDBStorage(f"sqlite:///{tmp_path / 'w.db'}")
    storage = HubStorage(
        get_storage(rdb), Outage("the study", deadline_s=10), window=HistoryWindow(recent=3, best=2)
    )
    study = optuna.create_study(storage=storage, study_name="w")
    distribution = {"x": optuna.distributions.FloatDistribution(0, 100)}
    for value in range(10):
        study.add_trial(
            optuna.trial.create_trial(params={"x": value}, distributions=distribution, value=value)
        )
    study_id = storage.get_study_id_from_name("w")
    assert len(storage.get_all_trials(study_id)) == 10
    with storage.asking(study_id):
        seen = [t.number for t in storage.get_all_trials(study_id)]
    assert seen == [0, 1, 7, 8, 9]


def window_by_definition(
    trials: list[FrozenTrial], directions: list[StudyDirection], recent: int, best: int
) -> list[int]:
    """The numbers a window keeps, straight from its definition (the oracle below)."""
    finished = [t for t in trials if t.state.is_finished()]
    if len(finished) <= recent + best:
        return [t.number for t in trials]
    keep = {t.number for t in finished[-recent:]}
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    for index, direction in enumerate(directions):
        sign = 1.0 if direction == StudyDirection.MINIMIZE else -1.0
        keep.update(
            t.number for t in heapq.nsmallest(best, complete, key=lambda t: sign * t.values[index])
        )
    return [t.number for t in trials if not t.state.is_finished() or t.number in keep]


def test_the_window_cut_as_trials_finish_out_of_order_matches_its_definition() -> None:
    """One window cut again and again while trials start and end in any order, with ties, pruned
    and failed trials and two objectives: each cut keeps what the definition keeps, though the
    window looks only at the trials that were new or unfinished at its previous cut."""
    rng = random.Random(7)
    directions = [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE]
    distribution = {"x": optuna.distributions.FloatDistribution(0, 10)}
    window = HistoryWindow(recent=6, best=3)
    states: list[TrialState] = []
    values: dict[int, list[float]] = {}
    for _ in range(150):
        states += [TrialState.RUNNING] * rng.randint(0, 3)
        for number in rng.sample(range(len(states)), k=min(len(states), 3)):
            if states[number] == TrialState.RUNNING:
                states[number] = rng.choice(
                    [TrialState.COMPLETE] * 4 + [TrialState.PRUNED, TrialState.FAIL]
                )
                values[number] = [float(rng.randint(0, 9)), float(rng.randint(0, 9))]
        trials = []
        for number, state in enumerate(states):
            trial = optuna.trial.create_trial(
                state=state,
                params={"x": 1.0},
                distributions=distribution,
                values=values[number] if state == TrialState.COMPLETE else None,
            )
            trial.number = number
            trials.append(trial)
        kept = [t.number for t in window.cut(trials, directions)]
        assert kept == window_by_definition(trials, directions, recent=6, best=3)
    assert sum(s.is_finished() for s in states) > 100  # the window was cutting most of the time
