"""Optuna samplers and pruners built from the spec's ``sampler`` and ``pruner`` sections."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import optuna

from orchestrator.space import grid

if TYPE_CHECKING:
    from orchestrator.spec import Spec

__all__ = ["build_pruner", "build_sampler", "grid_size"]


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler without its ``study.stop()`` at the end of the grid.

    ``Study.stop`` only works inside ``Study.optimize``; orch asks and tells, and stops at the
    grid's size itself (see :func:`grid_size`).
    """

    def after_trial(self, study, trial, state, values) -> None:  # type: ignore[no-untyped-def]
        return None


def grid_size(spec: Spec) -> int | None:
    """How many points a grid sampler has (None for other samplers)."""
    if spec.sampler.type != "grid":
        return None
    return math.prod(len(values) for values in grid(spec.space).values())


def build_sampler(spec: Spec, *, resumed_after: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler the spec names, seeded as asked.

    A study resumed after ``resumed_after`` trials gets the seed ``seed + resumed_after``: the
    same seed again would replay the same random draws and evaluate old param sets twice.
    """
    cfg = spec.sampler
    seed = None if cfg.seed is None else cfg.seed + resumed_after
    samplers = optuna.samplers
    if cfg.type == "tpe":
        return samplers.TPESampler(
            seed=seed,
            n_startup_trials=cfg.n_startup_trials,
            multivariate=cfg.multivariate or cfg.group,
            group=cfg.group,
            constant_liar=cfg.constant_liar,
        )
    if cfg.type == "random":
        return samplers.RandomSampler(seed=seed)
    if cfg.type == "cmaes":
        return samplers.CmaEsSampler(
            seed=seed,
            n_startup_trials=cfg.n_startup_trials,
            sigma0=cfg.sigma0,
            restart_strategy=cfg.restart_strategy,
            warn_independent_sampling=False,
        )
    if cfg.type == "grid":
        return _AskTellGridSampler(grid(spec.space), seed=seed)
    if cfg.type == "nsga2":
        return samplers.NSGAIISampler(
            seed=seed,
            population_size=cfg.population_size,
            mutation_prob=cfg.mutation_prob,
            crossover_prob=cfg.crossover_prob,
        )
    if cfg.type == "nsga3":
        return samplers.NSGAIIISampler(seed=seed, population_size=cfg.population_size)
    if cfg.type == "qmc":
        return samplers.QMCSampler(
            seed=seed,
            qmc_type=cfg.qmc_type,
            scramble=cfg.scramble,
            warn_independent_sampling=False,
        )
    return samplers.GPSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)


def build_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    """The pruner the spec names (``none`` never prunes)."""
    cfg = spec.pruner
    pruners = optuna.pruners
    if cfg.type == "median":
        return pruners.MedianPruner(
            n_startup_trials=cfg.startup_trials,
            n_warmup_steps=cfg.warmup_steps,
            interval_steps=cfg.interval_steps,
        )
    if cfg.type == "percentile":
        return pruners.PercentilePruner(
            cfg.percentile,
            n_startup_trials=cfg.startup_trials,
            n_warmup_steps=cfg.warmup_steps,
            interval_steps=cfg.interval_steps,
        )
    if cfg.type == "hyperband":
        return pruners.HyperbandPruner(
            min_resource=cfg.min_resource,
            max_resource=cfg.max_resource,
            reduction_factor=cfg.reduction_factor,
        )
    if cfg.type == "successive_halving":
        return pruners.SuccessiveHalvingPruner(
            min_resource=cfg.min_resource,
            reduction_factor=cfg.reduction_factor,
            min_early_stopping_rate=cfg.min_early_stopping_rate,
        )
    if cfg.type == "threshold":
        return pruners.ThresholdPruner(
            lower=cfg.lower, upper=cfg.upper, n_warmup_steps=cfg.warmup_steps
        )
    return pruners.NopPruner()
