"""The DEQ example specs name real jobs, known params and valid values."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.deq.params import EvalConfig, TrainConfig, parse_params
from jobs.deq.train import RETURNED
from orchestrator.spec import load_spec

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
SPECS = ["anderson.yaml", "broyden.yaml", "hamburger.yaml", "solvers-eval.yaml"]


def _values(param: dict[str, Any]) -> list[Any]:
    if param["type"] == "categorical":
        return list(param["choices"])
    return [param["low"], param["high"]]


@pytest.mark.parametrize("name", SPECS)
def test_every_value_of_every_param_is_accepted_by_the_job(name: str) -> None:
    spec = yaml.safe_load((SPACES / name).read_text())
    module, function = spec["job"].split(":")
    assert callable(getattr(importlib.import_module(module), function))
    kind = EvalConfig if module == "jobs.deq.evaluate" else TrainConfig
    fixed = {**spec.get("fixed", {}), "epochs": 1}
    assert not set(fixed) & set(spec["space"]), "a name is either fixed or sampled"
    for param, definition in spec["space"].items():
        for value in _values(definition):
            conditions = {
                k: v if not isinstance(v, list) else v[0]
                for k, v in definition.get("when", {}).items()
            }
            parse_params({**fixed, **conditions, param: value}, kind)
    objectives = spec["objective"] if isinstance(spec["objective"], list) else [spec["objective"]]
    if len(objectives) > 1:
        assert spec["pruner"]["type"] == "none"


@pytest.mark.parametrize("name", ["anderson.yaml", "broyden.yaml", "hamburger.yaml"])
def test_training_specs_stop_on_metrics_the_job_reports(name: str) -> None:
    spec = load_spec(SPACES / name)
    assert spec.stop_when, "the training specs end non-converging trials early"
    for rule in spec.stop_when:
        assert rule.metric in RETURNED, rule  # a misspelt metric would never stop anything
