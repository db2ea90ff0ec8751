"""``stop_when``: the spec's rules on reported metrics, and which attempt's report ends it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.spec import StopRule

__all__ = ["Stop", "StopRules"]


@dataclass(frozen=True)
class Stop:
    """Why a rule ended an attempt: the rule, and the report that completed its streak."""

    #: ``stop_when[i]: <the rule in words>`` (recorded as the trial's stop rule).
    rule: str
    step: int
    metric: str
    value: float

    @property
    def reason(self) -> str:
        """The trial's reason, e.g. ``stopped at step 3 by stop_when[0]: ... (residual = 0.2)``."""
        return f"stopped at step {self.step} by {self.rule} ({self.metric} = {self.value:.4g})"


class StopRules:
    """Counts, per attempt, the consecutive reports that hold each rule.

    A rule counts the reports that carry its metric at steps ``>= after_step``: one that holds
    extends its streak, one that does not (NaN included) resets it; reports without the metric
    leave it as it is. Once a streak reaches ``patience`` the attempt is stopped, and every later
    report of it is answered the same way.
    """

    def __init__(self, rules: Sequence[StopRule]) -> None:
        self._rules = list(rules)
        self._streaks: dict[str, list[int]] = {}
        self._stopped: dict[str, Stop] = {}
        self._reported: set[str] = set()

    def check(self, key: str, step: int, metrics: Mapping[str, float]) -> Stop | None:
        """Count attempt ``key``'s report at ``step``; return the rule that stops it, if any."""
        if not self._rules:
            return None
        self._reported.update(metrics)
        if key in self._stopped:
            return self._stopped[key]
        streaks = self._streaks.setdefault(key, [0] * len(self._rules))
        for i, rule in enumerate(self._rules):
            value = metrics.get(rule.metric)
            if value is None or step < rule.after_step:
                continue
            streaks[i] = streaks[i] + 1 if rule.holds(value) else 0
            if streaks[i] >= rule.patience:
                stop = Stop(f"stop_when[{i}]: {rule.describe()}", step, rule.metric, value)
                self._stopped[key] = stop
                return stop
        return None

    def pop(self, key: str) -> Stop | None:
        """Forget attempt ``key``; return the rule that stopped it, if one did."""
        self._streaks.pop(key, None)
        return self._stopped.pop(key, None)

    def never_reported(self) -> list[str]:
        """One line per rule whose metric no report carried (a misspelt name?), once any has."""
        if not self._reported:
            return []
        known = ", ".join(sorted(self._reported))
        return [
            f"stop_when[{i}]: no trial reported metric {rule.metric!r}, so the rule never "
            f"applied (reported: {known})"
            for i, rule in enumerate(self._rules)
            if rule.metric not in self._reported
        ]
