"""The job contract of ``jobs.attention.train:run`` through ``orchestrator.local_trial``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jobs.attention.train import run
from orchestrator import Trial, TrialDiverged, TrialPruned, local_trial

RETURNED = {
    "steps_to_alignment",
    "final_alignment",
    "final_loss",
    "loss_gap",
    "weight_norm",
    "margin",
    "margin_ratio",
    "alignment_l2",
    "alignment_lp",
    "lp_distance",
    "opt_attention",
    "steps_run",
}


def _run(**params):
    trial = local_trial(params)
    return run(params, trial), trial


def test_returns_finite_floats_and_reports_sparsely_up_to_the_last_step() -> None:
    result, trial = _run(optimizer="ngd", lr=0.3, steps=300)
    assert set(result) == RETURNED
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    steps = [step for step, _ in trial.sink.reports]
    assert steps[0] == 0 and steps[-1] == 300 and len(steps) == 101
    assert set(trial.sink.reports[-1][1]) >= {"loss", "alignment", "margin", "lp_distance"}
    assert 0 < result["steps_to_alignment"] <= 300
    assert result["final_alignment"] >= 0.99
    assert result["final_alignment"] == result["alignment_l2"]
    names = {f.name for f in trial.sink.artifact_dir.iterdir()}
    assert names == {"trajectory.csv", "solutions.npz"}
    curve = np.loadtxt(trial.sink.artifact_dir / "trajectory.csv", delimiter=",", skiprows=1)
    assert curve.shape == (301, 3)
    assert curve[int(result["steps_to_alignment"]), 0] >= 0.99


def test_report_every_and_the_never_aligned_sentinel() -> None:
    result, trial = _run(optimizer="gd", steps=25, report_every=10)
    assert [step for step, _ in trial.sink.reports] == [0, 10, 20, 25]
    assert result["steps_to_alignment"] == 26.0  # steps + 1: never reached cosine 0.99
    assert result["steps_run"] == 25.0


def test_is_deterministic_given_the_seed() -> None:
    first, _ = _run(optimizer="polyak", steps=40, seed=3)
    again, _ = _run(optimizer="polyak", steps=40, seed=3)
    other, _ = _run(optimizer="polyak", steps=40, seed=4)
    assert first == again
    assert first != other


def test_mirror_targets_the_lp_svm_and_kq_the_nuclear_one() -> None:
    mirror, _ = _run(optimizer="mirror", p=1.5, steps=30, potential="squared")
    assert mirror["final_alignment"] == mirror["alignment_lp"] != mirror["alignment_l2"]
    kq, trial = _run(optimizer="ngd", param="KQ", head="trainable", loss="exp", steps=30)
    assert kq["final_alignment"] == trial.sink.reports[-1][1]["alignment_nuc"]


def test_unknown_params_are_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"\['optimiser'\].*known: .*'optimizer'.*'steps'"):
        run({"optimiser": "gd"}, local_trial())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"optimizer": "adam"}, "known: .*'ngd'"),
        ({"p": 1.0}, "1 < p < inf"),
        ({"lr": -1.0}, "lr > 0"),
        ({"steps": 10.5}, "integer"),
        ({"steps": "10"}, "must be a int"),
        ({"head": "frozen"}, "head must be one of"),
        ({"param": "KQ", "init_scale": 0.0}, "saddle"),
        ({"optimizer": "mirror", "param": "KQ"}, "param=W for optimizer=mirror"),
    ],
)
def test_bad_values_are_rejected(params, message) -> None:
    with pytest.raises(ValueError, match=message):
        run(params, local_trial())


def test_integral_floats_are_accepted_for_int_params() -> None:
    result, _ = _run(steps=5.0, n=4.0)
    assert result["steps_run"] == 5.0


class _PruneAt:
    """A sink whose pruner stops the trial at a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        return step >= self.step

    def log_artifact(self, name: str, data: bytes, *, part: int = 0, last: bool = True) -> None:
        raise AssertionError("a pruned trial stores nothing")

    def set_tags(self, tags: dict[str, str]) -> None:
        return None

    def close(self) -> None:
        return None


def test_pruning_propagates() -> None:
    trial = Trial(number=0, params={}, sink=_PruneAt(20))
    with pytest.raises(TrialPruned, match="step 20"):
        run({"steps": 100, "report_every": 10}, trial)


def test_overflowing_mirror_step_is_a_diverged_trial() -> None:
    with pytest.raises(TrialDiverged, match="non-finite loss"):
        run({"optimizer": "mirror", "p": 1.005, "lr": 1e4, "steps": 10}, local_trial())
