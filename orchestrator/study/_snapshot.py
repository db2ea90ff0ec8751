"""What the sampler reads while the hub asks: one snapshot of the study, cut to a history window.

Optuna's samplers read the whole study several times per trial (TPE with ``constant_liar``
once per parameter, each read going back to the database for the running trials). The hub is
the study's only writer while a sweep runs, so one read at the start of an ask serves every
read of that ask. With a :class:`HistoryWindow` the sampler sees the running trials, the
latest ``recent`` finished ones and the ``best`` best, so its cost stops growing with the study.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Container, Iterator
from contextlib import contextmanager

from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from orchestrator._retry import Outage
from orchestrator.study._retrying import RetryingStorage

__all__ = ["HistoryWindow", "HubStorage"]


class HistoryWindow:
    """Which finished trials a sampler models: the ``recent`` latest and the ``best`` best.

    Unfinished trials are always kept (TPE's constant liar counts the running ones). With
    several objectives the ``best`` of each objective are kept. A window follows one study: a
    finished trial never changes, so each cut looks only at the trials that were unfinished or
    new at the previous one: its cost follows the window, not the study's size.
    """

    def __init__(self, *, recent: int, best: int) -> None:
        self.recent = recent
        self.best = best
        self._forget(objectives=0)

    def _forget(self, *, objectives: int) -> None:
        self._seen = 0  # trials numbered below this were looked at...
        self._open: list[int] = []  # ...and these of them were unfinished
        self._finished = 0
        self._latest: list[int] = []  # min-heap of the ``recent`` highest finished numbers
        # per objective, a heap of the ``best`` lowest (sign * value, number), negated
        self._best: list[list[tuple[float, int]]] = [[] for _ in range(objectives)]

    def cut(self, trials: list[FrozenTrial], directions: list[StudyDirection]) -> list[FrozenTrial]:
        """``trials`` (the study's, ordered by number) without the finished ones outside the
        window."""
        numbered = not trials or trials[-1].number == len(trials) - 1  # 0..n-1: index = number
        if not numbered or len(trials) < self._seen or len(self._best) != len(directions):
            self._forget(objectives=len(directions))
        looked = self._open + list(range(self._seen, len(trials))) if numbered else None
        self._open = []
        for trial in trials if looked is None else (trials[n] for n in looked):
            if trial.state.is_finished():
                self._take(trial, directions)
            else:
                self._open.append(trial.number)
        self._seen = len(trials)
        kept = trials
        if self._finished > self.recent + self.best:
            keep = {*self._latest, *self._open}
            for heap in self._best:
                keep.update(-number for _, number in heap)
            if looked is None:
                kept = [t for t in trials if t.number in keep]
            else:
                kept = [trials[n] for n in sorted(keep)]
        if looked is None:  # not numbered 0..n-1: this cut read them all, the next one will too
            self._forget(objectives=0)
        return kept

    def _take(self, trial: FrozenTrial, directions: list[StudyDirection]) -> None:
        self._finished += 1
        heapq.heappush(self._latest, trial.number)
        if len(self._latest) > self.recent:
            heapq.heappop(self._latest)
        if trial.state != TrialState.COMPLETE or not trial.values:
            return
        for heap, direction, value in zip(self._best, directions, trial.values, strict=True):
            sign = 1.0 if direction == StudyDirection.MINIMIZE else -1.0
            heapq.heappush(heap, (-sign * value, -trial.number))  # the worst kept on top
            if len(heap) > self.best:
                heapq.heappop(heap)


class HubStorage(RetryingStorage):
    """The hub's storage: calls retried through outages; reads of an ask from one snapshot."""

    def __init__(
        self, base: BaseStorage, outage: Outage, *, window: HistoryWindow | None = None
    ) -> None:
        super().__init__(base, outage)
        self.window = window
        self._asking: int | None = None
        self._snapshot: list[FrozenTrial] | None = None

    @contextmanager
    def asking(self, study_id: int) -> Iterator[None]:
        """Serve the study's trial reads from one snapshot inside the ``with`` block."""
        self._asking, self._snapshot = study_id, None
        try:
            yield
        finally:
            self._asking, self._snapshot = None, None

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        if study_id != self._asking:
            return super().get_all_trials(study_id, deepcopy, states)
        if self._snapshot is None:
            trials = super().get_all_trials(study_id, deepcopy=False)
            if self.window is not None:
                trials = self.window.cut(trials, self.get_study_directions(study_id))
            self._snapshot = trials
        found = self._snapshot
        if states is not None:
            found = [t for t in found if t.state in states]
        return copy.deepcopy(found) if deepcopy else found
