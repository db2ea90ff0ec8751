"""What one trial attempt produced, read from what its job returned or raised."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.spec import Objective

__all__ = ["Outcome", "from_result"]

State = Literal["COMPLETE", "PRUNED", "FAIL"]


@dataclass
class Outcome:
    """The end of one attempt: its Optuna state, objective values, metrics and why."""

    state: State
    values: list[float] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    diverged: bool = False
    #: True when the job itself raised (retried only if the spec asks).
    job_error: bool = False
    duration_s: float = 0.0


def from_result(result: object, objectives: Sequence[Objective]) -> Outcome:
    """COMPLETE with the objective values, or FAIL saying what is wrong with ``result``."""
    if not isinstance(result, dict):
        return Outcome("FAIL", reason=f"job returned {type(result).__name__}, expected a dict")
    metrics: dict[str, float] = {}
    for name, value in result.items():
        try:
            metrics[str(name)] = float(value)
        except (TypeError, ValueError):
            return Outcome("FAIL", reason=f"metric {name!r} is not a number: {value!r}")
    values = []
    for objective in objectives:
        if objective.metric not in metrics:
            got = ", ".join(sorted(metrics)) or "nothing"
            return Outcome(
                "FAIL",
                metrics=metrics,
                reason=f"objective metric {objective.metric!r} missing from the result (got {got})",
            )
        value = metrics[objective.metric]
        if not math.isfinite(value):
            return Outcome(
                "FAIL", metrics=metrics, reason=f"objective metric {objective.metric!r} is {value}"
            )
        values.append(value)
    return Outcome("COMPLETE", values=values, metrics=metrics)
