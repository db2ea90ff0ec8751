"""The spec as Optuna sees it: the parameters a trial suggests, the grid, samplers and pruners.

One builder per sampler or pruner type, registered on its spec class: a new sampler is a
pydantic model in :mod:`orchestrator.spec` plus one ``@_sampler.register`` function here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import singledispatch
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from orchestrator.spec import (
    CmaEsSamplerSpec,
    FloatParam,
    GPSamplerSpec,
    GridSamplerSpec,
    HyperbandPrunerSpec,
    IntParam,
    MedianPrunerSpec,
    NoPrunerSpec,
    NSGAIIISamplerSpec,
    NSGAIISamplerSpec,
    Param,
    PercentilePrunerSpec,
    QMCSamplerSpec,
    RandomSamplerSpec,
    Spec,
    SuccessiveHalvingPrunerSpec,
    ThresholdPrunerSpec,
    TPESamplerSpec,
    is_active,
    sampling_order,
)

__all__ = ["build_pruner", "build_sampler", "grid", "grid_size", "suggest"]


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


def build_sampler(spec: Spec, *, resumed_after: int = 0) -> BaseSampler:
    """The sampler the spec names, seeded as asked.

    A study resumed after ``resumed_after`` trials gets the seed ``seed + resumed_after``: the
    same seed again would replay the same random draws and evaluate old param sets twice.

    Raises:
        TypeError: the spec's sampler type has no builder.
    """
    seed = None if spec.sampler.seed is None else spec.sampler.seed + resumed_after
    return _sampler(spec.sampler, seed, spec)


def build_pruner(spec: Spec) -> BasePruner:
    """The pruner the spec names (``none`` never prunes).

    Raises:
        TypeError: the spec's pruner type has no builder.
    """
    return _pruner(spec.pruner)


@singledispatch
def _sampler(cfg: object, seed: int | None, spec: Spec) -> BaseSampler:
    raise TypeError(f"no Optuna sampler is built for {type(cfg).__name__}")


@_sampler.register
def _(cfg: TPESamplerSpec, seed: int | None, spec: Spec) -> BaseSampler:
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=cfg.n_startup_trials,
        multivariate=cfg.multivariate or cfg.group,
        group=cfg.group,
        constant_liar=cfg.constant_liar,
    )


@_sampler.register
def _(cfg: RandomSamplerSpec, seed: int | None, spec: Spec) -> BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@_sampler.register
def _(cfg: CmaEsSamplerSpec, seed: int | None, spec: Spec) -> BaseSampler:
    return optuna.samplers.CmaEsSampler(
        seed=seed,
        n_startup_trials=cfg.n_startup_trials,
        sigma0=cfg.sigma0,
        restart_strategy=cfg.restart_strategy,
        warn_independent_sampling=False,
    )


@_sampler.register
def _(cfg: GridSamplerSpec, seed: int | None, spec: Spec) -> BaseSampler:
    return _AskTellGridSampler(grid(spec.space), seed=seed)


@_sampler.register
def _(cfg: NSGAIISamplerSpec, seed: int | None, spec: Spec) -> BaseSampler:
    return optuna.samplers.NSGAIISampler(
        seed=seed,
        population_size=cfg.population_size,
        mutation_prob=cfg.mutation_prob,
        crossover_prob=cfg.crossover_prob,
    )


@_sampler.register
def _(cfg: NSGAIIISamplerSpec, seed: int | None, spec: Spec) -> BaseSampler:
    return optuna.samplers.NSGAIIISampler(seed=seed, population_size=cfg.population_size)


@_sampler.register
def _(cfg: QMCSamplerSpec, seed: int | None, spec: Spec) -> BaseSampler:
    return optuna.samplers.QMCSampler(
        seed=seed, qmc_type=cfg.qmc_type, scramble=cfg.scramble, warn_independent_sampling=False
    )


@_sampler.register
def _(cfg: GPSamplerSpec, seed: int | None, spec: Spec) -> BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)


@singledispatch
def _pruner(cfg: object) -> BasePruner:
    raise TypeError(f"no Optuna pruner is built for {type(cfg).__name__}")


@_pruner.register
def _(cfg: NoPrunerSpec) -> BasePruner:
    return optuna.pruners.NopPruner()


@_pruner.register
def _(cfg: MedianPrunerSpec) -> BasePruner:
    return optuna.pruners.MedianPruner(
        n_startup_trials=cfg.startup_trials,
        n_warmup_steps=cfg.warmup_steps,
        interval_steps=cfg.interval_steps,
    )


@_pruner.register
def _(cfg: PercentilePrunerSpec) -> BasePruner:
    return optuna.pruners.PercentilePruner(
        cfg.percentile,
        n_startup_trials=cfg.startup_trials,
        n_warmup_steps=cfg.warmup_steps,
        interval_steps=cfg.interval_steps,
    )


@_pruner.register
def _(cfg: HyperbandPrunerSpec) -> BasePruner:
    return optuna.pruners.HyperbandPruner(
        min_resource=cfg.min_resource,
        max_resource=cfg.max_resource,
        reduction_factor=cfg.reduction_factor,
    )


@_pruner.register
def _(cfg: SuccessiveHalvingPrunerSpec) -> BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=cfg.min_resource,
        reduction_factor=cfg.reduction_factor,
        min_early_stopping_rate=cfg.min_early_stopping_rate,
    )


@_pruner.register
def _(cfg: ThresholdPrunerSpec) -> BasePruner:
    return optuna.pruners.ThresholdPruner(
        lower=cfg.lower, upper=cfg.upper, n_warmup_steps=cfg.warmup_steps
    )
