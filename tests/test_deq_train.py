"""The job contracts of ``jobs.deq.train:run`` and ``jobs.deq.evaluate:run`` via local_trial."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from jobs.deq import evaluate, train
from jobs.deq.checkpoint import load_checkpoint
from orchestrator import TrialDiverged, local_trial

RETURNED = {
    "train_loss",
    "test_accuracy",
    "test_error",
    "nfe_forward",
    "nfe_backward",
    "residual",
    "converged_fraction",
    "spectral_radius",
    "epoch_time_s",
    "peak_memory_mb",
    "weight_norm_max",
}


@pytest.fixture(scope="module")
def trained() -> tuple[dict[str, float], object]:
    params = {"epochs": 4, "lr": 0.01, "width": 128, "batch_size": 64}
    trial = local_trial(params)
    return train.run(params, trial), trial


def test_a_short_training_run_on_digits_beats_90_percent(trained) -> None:
    result, trial = trained
    assert set(result) >= RETURNED
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    assert result["test_accuracy"] > 0.90
    assert result["test_error"] == pytest.approx(1 - result["test_accuracy"])
    assert result["converged_fraction"] == 1.0 and result["residual"] < 1e-4
    assert 0 < result["spectral_radius"] < 1  # spectral normalisation: a contraction
    assert 0.5 < result["weight_norm_max"] <= 0.9 + 1e-3  # the default bound holds
    assert result["nfe_forward"] <= 50 and result["nfe_backward"] >= 1
    reports = trial.sink.reports
    assert [step for step, _ in reports] == [0, 1, 2, 3]
    assert set(reports[-1][1]) >= RETURNED
    files = {p.name for p in trial.sink.artifact_dir.iterdir()}
    assert files == {"model.pt", "residual_trace.png"}
    assert (trial.sink.artifact_dir / "residual_trace.png").read_bytes()[:4] == b"\x89PNG"


def test_weight_norm_max_is_the_exact_norm_of_the_trained_weights(trained) -> None:
    result, trial = trained
    saved = load_checkpoint(trial.sink.artifact_dir / "model.pt")["state_dict"]
    raw = saved["cell.layers.0.raw"].double()
    exact = float(torch.linalg.matrix_norm(raw, ord=2))
    assert result["weight_norm_max"] == pytest.approx(min(exact, 0.9), abs=1e-3)


def test_evaluate_sweeps_solvers_on_the_saved_checkpoint(trained) -> None:
    result, trial = trained
    checkpoint = str(trial.sink.artifact_dir / "model.pt")
    same = evaluate.run({"checkpoint": checkpoint, "tol": 1e-4}, local_trial())
    assert same["test_accuracy"] == pytest.approx(result["test_accuracy"], abs=0.005)
    loose = evaluate.run(
        {"checkpoint": checkpoint, "solver": "forward", "tol": 1e-2, "max_iter": 100}, local_trial()
    )
    tight = evaluate.run(
        {"checkpoint": checkpoint, "solver": "broyden", "tol": 1e-6, "memory": 20, "max_iter": 200},
        local_trial(),
    )
    assert loose["nfe_forward"] < same["nfe_forward"] < tight["nfe_forward"]
    assert tight["residual_max"] < 1e-6 and tight["converged_fraction"] == 1.0
    assert {"eval_time_s", "peak_memory_mb", "spectral_radius"} <= set(tight)


def test_evaluate_reads_an_mlflow_run_artifact(trained, tmp_path: Path, monkeypatch) -> None:
    from mlflow import MlflowClient

    _, trial = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # as orch sets it for its workers
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("deq-eval", artifact_location=str(tmp_path / "art"))
    run = client.create_run(experiment)
    client.log_artifact(run.info.run_id, str(trial.sink.artifact_dir / "model.pt"))
    client.set_terminated(run.info.run_id)
    eval_trial = local_trial()
    result = evaluate.run({"checkpoint": f"runs:/{run.info.run_id}/model.pt"}, eval_trial)
    assert result["test_accuracy"] > 0.9
    assert eval_trial.sink.tags["deq.trained_with"] == "deq/anderson/implicit"


def test_evaluate_names_a_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"runs:/<run_id>/model\.pt"):
        evaluate.run({"checkpoint": str(tmp_path / "nope.pt")}, local_trial())
    with pytest.raises(ValueError, match="checkpoint set"):
        evaluate.run({}, local_trial())


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"solver": "forward", "max_iter": 300}, "non-finite"),  # overflows to inf
        ({"solver": "forward", "max_iter": 4, "epochs": 3}, "consecutive epochs"),
    ],
)
def test_divergence_ends_the_trial_with_the_reason(params: dict, match: str) -> None:
    params = {
        "norm": "none",
        "init_scale": 6.0,
        "dataset": "synthetic",
        "samples": 200,
        "epochs": 1,
        "lr": 1e-6,
        **params,
    }
    trial = local_trial(params)
    with pytest.raises(TrialDiverged, match=match):
        train.run(params, trial)


def test_phantom_and_unrolled_modes_and_the_hamburger_models_run() -> None:
    common = {"epochs": 1, "dataset": "synthetic", "samples": 200, "width": 8, "max_iter": 20}
    for extra in (
        {"grad": "phantom", "phantom_steps": 3, "damping": 0.8, "solver": "broyden"},
        {"grad": "unrolled", "solver": "forward", "activation": "tanh", "depth": 2},
        {"model": "hamburger", "rank": 4, "nmf_steps": 3},
        {"model": "deq-hamburger", "rank": 4, "nmf_steps": 3, "norm": "weight"},
    ):
        params = {**common, **extra}
        trial = local_trial(params)
        result = train.run(params, trial)
        assert all(math.isfinite(v) for v in result.values()), extra
        if extra.get("grad") == "phantom":
            assert result["nfe_backward"] == 3
        if extra.get("model") == "hamburger":
            assert result["nfe_forward"] == 3 and result["spectral_radius"] == 0


def test_unknown_and_bad_params_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown params \['memroy'\].*known: .*'memory'"):
        train.run({"memroy": 3}, local_trial())
    with pytest.raises(ValueError, match=r"param 'solver' must be one of \['anderson'"):
        train.run({"solver": "newton"}, local_trial())
    with pytest.raises(ValueError, match="param 'depth' must be an integer"):
        train.run({"depth": 1.5}, local_trial())
    with pytest.raises(ValueError, match=r"unknown params \['grad'\] for EvalConfig"):
        evaluate.run({"checkpoint": "x.pt", "grad": "implicit"}, local_trial())


def test_training_is_deterministic_given_the_seed() -> None:
    params = {"epochs": 1, "dataset": "synthetic", "samples": 120, "width": 8}
    first = train.run(params, local_trial(params))
    again = train.run(params, local_trial(params))
    keys = ("train_loss", "test_accuracy", "nfe_forward", "residual")
    assert [first[k] for k in keys] == [again[k] for k in keys]
    assert torch.get_default_dtype() == torch.float32
