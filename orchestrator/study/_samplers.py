"""The spec as Optuna sees it: the parameters a trial suggests, the grid, samplers and pruners.

A spec's sampler or pruner section holds its Optuna class's arguments under the same names
(but the few in ``_RENAMED``): a new sampler is a pydantic model in :mod:`orchestrator.spec` and
its Optuna class in ``SAMPLERS`` here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from pydantic import BaseModel

from orchestrator.spec import FloatParam, IntParam, Param, Spec, is_active, sampling_order

__all__ = ["PRUNERS", "SAMPLERS", "build_pruner", "build_sampler", "grid", "grid_size", "suggest"]


def suggest(trial: optuna.Trial, space: Mapping[str, Param]) -> dict[str, Any]:
    """Sample one value per active parameter on an Optuna trial (define-by-run)."""
    params: dict[str, Any] = {}
    for name in sampling_order(space):
        param = space[name]
        if not is_active(param, params):
            continue
        if isinstance(param, IntParam):
            params[name] = trial.suggest_int(
                name, param.low, param.high, step=param.step, log=param.log
            )
        elif isinstance(param, FloatParam):
            params[name] = trial.suggest_float(
                name, param.low, param.high, step=param.step, log=param.log
            )
        else:
            params[name] = trial.suggest_categorical(name, param.choices)
    return params


def grid(space: Mapping[str, Param]) -> dict[str, list[Any]]:
    """Every value of every parameter, for Optuna's GridSampler.

    Raises:
        ValueError: a float parameter has no ``step``.
    """
    values: dict[str, list[Any]] = {}
    for name, param in space.items():
        if isinstance(param, IntParam):
            values[name] = list(range(param.low, param.high + 1, param.step))
        elif isinstance(param, FloatParam):
            if param.step is None:
                raise ValueError(f"space.{name}: a grid needs a step for float parameters")
            count = round((param.high - param.low) / param.step) + 1
            values[name] = [round(param.low + k * param.step, 12) for k in range(count)]
        else:
            values[name] = list(param.choices)
    return values


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler without its ``study.stop()`` at the end of the grid.

    ``Study.stop`` only works inside ``Study.optimize``; orch asks and tells, and stops at the
    grid's size itself (see :func:`grid_size`).
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def grid_size(spec: Spec) -> int | None:
    """How many points a grid sampler has (None for other samplers)."""
    if spec.sampler.type != "grid":
        return None
    return math.prod(len(values) for values in grid(spec.space).values())


#: The Optuna sampler of each spec ``sampler.type`` (grid: see :func:`build_sampler`).
SAMPLERS: dict[str, type[BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "grid": _AskTellGridSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "nsga3": optuna.samplers.NSGAIIISampler,
    "qmc": optuna.samplers.QMCSampler,
    "gp": optuna.samplers.GPSampler,
}
#: The Optuna pruner of each spec ``pruner.type``.
PRUNERS: dict[str, type[BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "threshold": optuna.pruners.ThresholdPruner,
}
#: Spec field names that differ from the Optuna argument they set (spec names are a contract).
_RENAMED = {"startup_trials": "n_startup_trials", "warmup_steps": "n_warmup_steps"}
#: Spec fields of orch's own, not arguments of the Optuna class (``history``: the hub's window).
_ORCH_FIELDS = {"type", "seed", "history"}
#: Samplers that would warn on every conditional parameter they sample independently.
_QUIET = {"cmaes", "qmc"}


def build_sampler(spec: Spec, *, resumed_after: int = 0) -> BaseSampler:
    """The sampler the spec names, seeded as asked.

    A study resumed after ``resumed_after`` trials gets the seed ``seed + resumed_after``: the
    same seed again would replay the same random draws and evaluate old param sets twice.

    Raises:
        KeyError: the spec's sampler type has no Optuna sampler here.
    """
    cfg = spec.sampler
    kwargs = _arguments(cfg)
    if cfg.seed is not None:
        kwargs["seed"] = cfg.seed + resumed_after
    if cfg.type == "grid":
        kwargs["search_space"] = grid(spec.space)
    if cfg.type == "tpe" and cfg.group:
        kwargs["multivariate"] = True  # Optuna's group sampling needs it
    if cfg.type in _QUIET:
        kwargs["warn_independent_sampling"] = False
    return SAMPLERS[cfg.type](**kwargs)


def build_pruner(spec: Spec) -> BasePruner:
    """The pruner the spec names (``none`` never prunes).

    Raises:
        KeyError: the spec's pruner type has no Optuna pruner here.
    """
    return PRUNERS[spec.pruner.type](**_arguments(spec.pruner))


def _arguments(section: BaseModel) -> dict[str, Any]:
    """A spec section's fields as its Optuna class's keyword arguments."""
    fields = section.model_dump(exclude=_ORCH_FIELDS)
    return {_RENAMED.get(name, name): value for name, value in fields.items()}
