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
    several objectives the ``best`` of each objective are kept.
    """

    def __init__(self, *, recent: int, best: int) -> None:
        self.recent = recent
        self.best = best

    def cut(self, trials: list[FrozenTrial], directions: list[StudyDirection]) -> list[FrozenTrial]:
        """``trials`` (ordered by number) without the finished ones outside the window."""
        finished = [t for t in trials if t.state.is_finished()]
        if len(finished) <= self.recent + self.best:
            return trials
        keep = {t.number for t in finished[-self.recent :]}
        complete = [t for t in finished if t.state == TrialState.COMPLETE and t.values]
        for index, direction in enumerate(directions):
            sign = 1.0 if direction == StudyDirection.MINIMIZE else -1.0
            best = heapq.nsmallest(self.best, complete, key=lambda t: sign * t.values[index])
            keep.update(t.number for t in best)
        return [t for t in trials if not t.state.is_finished() or t.number in keep]


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
