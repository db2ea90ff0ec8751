"""Finished sweeps shared by the results tests: one single-objective, one multi-objective.

Specs are passed as objects so the project is the repository (the sweep records its commit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml

from orchestrator.spec import Spec
from orchestrator.sweep import SweepResult, sweep
from tests.conftest import REPO
from tests.helpers import load

SINGLE = """
name: results
job: jobs.quadratic:run
objective: {metric: loss, direction: minimize}
trials: 8
parallel: 4
sampler: {type: random, seed: 3}
pruner: {type: median, warmup_steps: 1, startup_trials: 3}
space:
  x: {type: float, low: -3.0, high: 5.0}
  shape: {type: categorical, choices: [bowl, ridge, saddle]}
  y: {type: float, low: -3.0, high: 3.0, when: {shape: ridge}}
  epochs: {type: int, low: 2, high: 5}
fixed: {seed: 7}
"""

MULTI = """
name: front
job: tests.jobs_for_tests:two_objectives
objective:
  - {metric: error, direction: minimize}
  - {metric: cost, direction: minimize}
trials: 6
parallel: 3
sampler: {type: random, seed: 1}
space:
  x: {type: float, low: 0.0, high: 1.0}
  z: {type: int, low: 0, high: 3}
"""


@dataclass
class Finished:
    """A finished sweep: where it lives and what it left."""

    workspace: Path
    result: SweepResult
    study: optuna.Study

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.workspace}/optuna.db"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.workspace}/mlflow.db"


def spec_of(text: str) -> Spec:
    return Spec.model_validate(yaml.safe_load(textwrap.dedent(text)))


def _finished(tmp_path_factory: pytest.TempPathFactory, text: str) -> Finished:
    workspace = tmp_path_factory.mktemp("ws")
    spec = spec_of(text)
    result = sweep(spec, workspace=workspace, log_to_driver=False)
    assert not result.errors, result.errors
    return Finished(workspace, result, load(workspace, spec.name))


@pytest.fixture(scope="session")
def finished(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """The single-objective sweep: float, int, categorical and a conditional param; pruning."""
    return _finished(tmp_path_factory, SINGLE)


@pytest.fixture(scope="session")
def front(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """The two-objective sweep (a Pareto front)."""
    return _finished(tmp_path_factory, MULTI)


@pytest.fixture
def orch() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the ``orch`` command line in a fresh process, as a person would."""

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ORCH, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=ENV
        )

    return run


#: The console script, runnable without installing this checkout.
ORCH = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    "COLUMNS": "200",
}
