"""Search spaces on a real Optuna study: conditions, sampling order, grids."""

from __future__ import annotations

from typing import get_args

import optuna
import pytest

from orchestrator.spec import Spec, sampling_order
from orchestrator.spec._model import PrunerSpec, SamplerSpec
from orchestrator.study import PRUNERS, SAMPLERS, build_pruner, build_sampler, grid, suggest

SPACE = {
    "memory": {"type": "int", "low": 1, "high": 10, "when": {"solver": "anderson"}},
    "solver": {"type": "categorical", "choices": ["anderson", "broyden", "forward"]},
    "beta": {"type": "float", "low": 0.1, "high": 1.0, "when": {"solver": ["anderson", "broyden"]}},
    "rank": {"type": "int", "low": 8, "high": 64, "step": 8},
}


def make_spec(space: dict, **extra) -> Spec:
    return Spec.model_validate(
        {"name": "s", "job": "m:f", "objective": {"metric": "loss"}, "space": space, **extra}
    )


def test_conditions_are_sampled_after_what_they_depend_on():
    spec = make_spec(SPACE)
    assert sampling_order(spec.space) == ["solver", "memory", "beta", "rank"]


def test_conditional_params_appear_only_when_their_condition_holds():
    spec = make_spec(SPACE, sampler={"type": "random", "seed": 1})
    study = optuna.create_study(sampler=build_sampler(spec))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        params = suggest(trial, spec.space)
        study.tell(trial, 0.0)
        seen.add(params["solver"])
        assert ("memory" in params) == (params["solver"] == "anderson")
        assert ("beta" in params) == (params["solver"] in ("anderson", "broyden"))
        assert params["rank"] % 8 == 0 and 8 <= params["rank"] <= 64
    assert seen == {"anderson", "broyden", "forward"}


def test_grid_enumerates_every_combination_once():
    spec = make_spec(
        {
            "a": {"type": "int", "low": 1, "high": 3},
            "b": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.25},
            "c": {"type": "categorical", "choices": ["x", "y"]},
        },
        sampler={"type": "grid", "seed": 0},
    )
    assert grid(spec.space) == {"a": [1, 2, 3], "b": [0.0, 0.25, 0.5], "c": ["x", "y"]}
    study = optuna.create_study(sampler=build_sampler(spec))
    combos = set()
    for _ in range(18):
        trial = study.ask()
        combos.add(tuple(suggest(trial, spec.space).values()))
        study.tell(trial, 0.0)
    assert len(combos) == 18


SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "grid": optuna.samplers.GridSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "nsga3": optuna.samplers.NSGAIIISampler,
    "qmc": optuna.samplers.QMCSampler,
    "gp": optuna.samplers.GPSampler,
}


def _union_types(annotation: object) -> set[str]:
    """The ``type`` literals of a discriminated union of spec sections."""
    members = get_args(get_args(annotation)[0])
    return {get_args(m.model_fields["type"].annotation)[0] for m in members}


def test_every_sampler_and_pruner_type_of_the_spec_has_an_optuna_class():
    assert _union_types(SamplerSpec) == set(SAMPLER_CLASSES) == set(SAMPLERS)
    assert _union_types(PrunerSpec) == set(PRUNERS)


@pytest.mark.parametrize("sampler", sorted(SAMPLER_CLASSES))
def test_every_sampler_builds_its_own_optuna_sampler_and_samples(sampler):
    spec = make_spec(
        {
            "x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25},
            "n": {"type": "int", "low": 1, "high": 4},
        },
        sampler={"type": sampler, "seed": 0},
    )
    built = build_sampler(spec)
    assert type(built) is SAMPLER_CLASSES[sampler] or (
        sampler == "grid" and isinstance(built, optuna.samplers.GridSampler)
    )
    study = optuna.create_study(sampler=built)
    for _ in range(3):
        trial = study.ask()
        params = suggest(trial, spec.space)
        study.tell(trial, params["x"])
    assert len(study.trials) == 3


def test_a_resumed_study_samples_with_the_seed_plus_its_earlier_trials():
    spec = make_spec(
        {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        sampler={"type": "tpe", "seed": 3, "n_startup_trials": 7},
    )

    def draws(sampler: optuna.samplers.BaseSampler) -> list[float]:
        study = optuna.create_study(sampler=sampler)
        return [study.ask().suggest_float("x", 0.0, 1.0) for _ in range(3)]

    expected = draws(optuna.samplers.TPESampler(seed=8, n_startup_trials=7))
    assert draws(build_sampler(spec, resumed_after=5)) == expected
    assert draws(build_sampler(spec)) != expected


@pytest.mark.parametrize(
    ("pruner", "cls"),
    [
        ({"type": "none"}, optuna.pruners.NopPruner),
        ({"type": "median", "warmup_steps": 2}, optuna.pruners.MedianPruner),
        ({"type": "percentile", "percentile": 10}, optuna.pruners.PercentilePruner),
        ({"type": "hyperband", "max_resource": 9}, optuna.pruners.HyperbandPruner),
        ({"type": "successive_halving"}, optuna.pruners.SuccessiveHalvingPruner),
        ({"type": "threshold", "upper": 3.0}, optuna.pruners.ThresholdPruner),
    ],
)
def test_pruners_build(pruner, cls):
    spec = make_spec({"x": {"type": "float", "low": 0.0, "high": 1.0}}, pruner=pruner)
    assert type(build_pruner(spec)) is cls
