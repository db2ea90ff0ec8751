"""One attempt of a trial: the ticket a worker gets, the job's call, and the outcome it returns.

Kept free of Optuna, MLflow and pydantic, so a Ray worker starts without importing them.
"""

from __future__ import annotations

import math
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.errors import StoreUnavailable
from orchestrator.trial._api import Trial, TrialDiverged, TrialPruned
from orchestrator.trial._jobref import JobFn

__all__ = ["Outcome", "Ticket", "call_job", "from_result"]

#: Longest failure reason kept from an exception's last line.
REASON_LIMIT = 8000

State = Literal["COMPLETE", "PRUNED", "FAIL"]


@dataclass(frozen=True)
class Ticket:
    """One attempt of one trial, as handed to the executor."""

    number: int
    trial_id: int
    attempt: int
    params: dict[str, Any]

    @property
    def key(self) -> str:
        """The attempt's address in the tracker."""
        return f"{self.number}.{self.attempt}"


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


def from_result(result: object, objectives: Sequence[str]) -> Outcome:
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
    for metric in objectives:
        if metric not in metrics:
            got = ", ".join(sorted(metrics)) or "nothing"
            return Outcome(
                "FAIL",
                metrics=metrics,
                reason=f"objective metric {metric!r} missing from the result (got {got})",
            )
        value = metrics[metric]
        if not math.isfinite(value):
            return Outcome(
                "FAIL", metrics=metrics, reason=f"objective metric {metric!r} is {value}"
            )
        values.append(value)
    return Outcome("COMPLETE", values=values, metrics=metrics)


def call_job(job: JobFn, trial: Trial, objectives: Sequence[str]) -> Outcome:
    """Call ``job(params, trial)`` and turn its result, or what it raised, into an outcome.

    Pruning (orch's or Optuna's ``TrialPruned``) and :class:`TrialDiverged` end PRUNED; any
    other exception ends FAIL with its last line as the reason and the whole traceback stored
    as the run's ``traceback.txt``. Never raises for the job's own errors; a report whose
    database stayed unreachable (:class:`StoreUnavailable`) is raised on, as the sweep's.
    """
    try:
        return from_result(job(dict(trial.params), trial), objectives)
    except _pruned_types():
        return Outcome("PRUNED", reason=f"pruned at step {trial.last_step}")
    except TrialDiverged as exc:
        return Outcome("PRUNED", reason=f"diverged: {exc}", diverged=True)
    except StoreUnavailable:  # a report the hub could not store: the sweep stops, not the trial
        raise
    except Exception as exc:
        text = "".join(traceback.format_exception(exc))
        trial.sink.log_artifact("traceback.txt", text.encode())
        summary = "".join(traceback.format_exception_only(exc)).strip().splitlines()[-1]
        return Outcome("FAIL", reason=summary[:REASON_LIMIT], job_error=True)


def _pruned_types() -> tuple[type[BaseException], ...]:
    """orch's TrialPruned, and Optuna's when the job imported Optuna (ported objectives)."""
    optuna = sys.modules.get("optuna")
    return (TrialPruned, optuna.TrialPruned) if optuna is not None else (TrialPruned,)
