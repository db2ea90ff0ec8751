"""Finished sweeps shared by the results tests: one single-objective, one multi-objective.

Specs are passed as objects so the project is the repository (the sweep records its commit).
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml

from orchestrator import SweepResult, sweep
from orchestrator.cli import main
from orchestrator.spec import Spec
from tests.conftest import REPO
from tests.helpers import load

SINGLE = """
name: results
job: jobs.quadratic:run
objective: {metric: loss, direction: minimize}
trials: 8
parallel: 2
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
parallel: 2
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


def _finished(
    tmp_path_factory: pytest.TempPathFactory, text: str, *, report: bool = True
) -> Finished:
    workspace = tmp_path_factory.mktemp("ws")
    spec = spec_of(text)
    result = sweep(spec, workspace=workspace, log_to_driver=False, report=report)
    assert not result.errors, result.errors
    return Finished(workspace, result, load(workspace, spec.name))


@pytest.fixture(scope="session")
def finished(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """The single-objective sweep: float, int, categorical and a conditional param; pruning."""
    return _finished(tmp_path_factory, SINGLE)


@pytest.fixture(scope="session")
def front(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """The two-objective sweep (a Pareto front); its report is made by ``orch report``."""
    return _finished(tmp_path_factory, MULTI, report=False)


@dataclass
class Ran:
    """What one ``orch`` command did."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def orch(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """Run ``orch ARGS`` through its console entry point (exit codes included), in-process."""

    def run(*args: str) -> Ran:
        monkeypatch.setattr(sys, "argv", ["orch", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


#: The console script, runnable without installing this checkout.
ORCH = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    "COLUMNS": "200",
}
