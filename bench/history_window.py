"""The study hub's per-ask cost of TPE's history window (``sampler.history``) as a study grows.

For each study size: ``SIZE`` finished trials and 64 running ones; then 200 asks, each after one
running trial ended and a new one started (as the hub sees the study), each timed around
``HistoryWindow.cut`` with the default window (1,000 latest + 100 best). Prints the median
milliseconds per ask; run it on two checkouts to compare them.

    python bench/history_window.py [--sizes 2000,5000,10000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from orchestrator.study._snapshot import HistoryWindow

RUNNING = 64
ASKS = 200
DISTRIBUTION = {"x": optuna.distributions.FloatDistribution(0, 1)}


def trial(number: int, value: float | None) -> FrozenTrial:
    """A finished trial with ``value``, or a running one (``None``)."""
    state = TrialState.RUNNING if value is None else TrialState.COMPLETE
    made = create_trial(state=state, params={"x": 0.5}, distributions=DISTRIBUTION, value=value)
    made.number = number
    return made


def per_ask_ms(size: int, rng: random.Random) -> float:
    trials = [trial(n, rng.random()) for n in range(size)]
    trials += [trial(n, None) for n in range(size, size + RUNNING)]
    window = HistoryWindow(recent=1000, best=100)
    directions = [StudyDirection.MINIMIZE]
    window.cut(trials, directions)  # a sweep's first ask reads the whole study once
    times = []
    for ended in range(size, size + ASKS):
        trials[ended] = trial(ended, rng.random())
        trials.append(trial(len(trials), None))
        start = time.perf_counter()
        window.cut(trials, directions)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,5000,10000")
    args = parser.parse_args()
    rng = random.Random(0)
    for size in map(int, args.sizes.split(",")):
        print(f"{size} finished trials: {per_ask_ms(size, rng):.3f} ms per ask", flush=True)


if __name__ == "__main__":
    main()
