"""search_spaces/attention-optimizers.yaml names this job and only params it knows."""

from __future__ import annotations

import itertools
import math
from dataclasses import fields
from pathlib import Path

import yaml

from jobs.attention.optimizers import OPTIMIZERS
from jobs.attention.params import Config
from jobs.attention.train import run
from orchestrator import local_trial

SPEC = yaml.safe_load(
    (Path(__file__).parents[1] / "search_spaces" / "attention-optimizers.yaml").read_text()
)


def test_spec_points_at_the_job_and_its_objective() -> None:
    assert SPEC["job"] == "jobs.attention.train:run"
    assert SPEC["objective"] == {"metric": "steps_to_alignment", "direction": "minimize"}
    known = {f.name for f in fields(Config)}
    assert set(SPEC["space"]) | set(SPEC["fixed"]) <= known
    assert set(SPEC["space"]["optimizer"]["choices"]) == set(OPTIMIZERS)


def test_every_corner_of_the_space_runs() -> None:
    space = SPEC["space"]
    for optimizer, lr in itertools.product(
        space["optimizer"]["choices"], (space["lr"]["low"], space["lr"]["high"])
    ):
        params = {**SPEC["fixed"], "optimizer": optimizer, "lr": lr, "steps": 20}
        if optimizer == "mirror":
            params["p"] = space["p"]["high"]
        result = run(params, local_trial(params))
        assert math.isfinite(result["steps_to_alignment"])
