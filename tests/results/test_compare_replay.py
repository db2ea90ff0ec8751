"""``orch compare`` and ``orch replay`` on a finished sweep's runs."""

from __future__ import annotations

import subprocess

import pytest
from matplotlib.image import imread
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.names import Tag
from orchestrator.results import compare_runs, recover_params, replay
from orchestrator.tracking import parent_spec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, path
    height, width, _ = imread(path).shape
    assert height > 100 and width > 100


def test_compare_shows_differing_params_metrics_and_curves(finished, tmp_path):
    study, client = finished.study, MlflowClient(finished.tracking_uri)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"][:2]
    a, b = complete
    run_b = b.user_attrs["mlflow_run_id"]
    found = compare_runs(
        [f"results:{a.number}", run_b],
        tracking_uri=finished.tracking_uri,
        storage_url=finished.storage,
    )
    assert [r.run_id for r in found.runs] == [a.user_attrs["mlflow_run_id"], run_b]
    assert found.runs[0].label == f"results:{a.number}"
    assert found.differing["x"] == [str(a.params["x"]), str(b.params["x"])]
    assert found.same["seed"] == "7" and "x" not in found.same
    for i, trial in enumerate((a, b)):
        logged = client.get_run(trial.user_attrs["mlflow_run_id"]).data.metrics
        assert found.metrics["loss"][i] == logged["loss"] == pytest.approx(trial.value)
    assert set(found.histories) == {"loss", "x_sq"}  # "distance" is only logged once
    # Without the study storage, trial refs are found through the runs' tags.
    tagged = compare_runs(
        [f"results:{a.number}", f"results:{b.number}"], tracking_uri=finished.tracking_uri
    )
    assert [r.run_id for r in tagged.runs] == [r.run_id for r in found.runs]

    plot = tmp_path / "curves.png"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            f"results:{a.number}",
            run_b,
            "--plot",
            str(plot),
            "--workspace",
            str(finished.workspace),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "params that differ" in result.output and "final metrics" in result.output
    assert_png(plot)


def test_replay_reproduces_a_seeded_trial(finished):
    client = MlflowClient(finished.tracking_uri)
    best = finished.study.best_trial
    original = client.get_run(best.user_attrs["mlflow_run_id"])
    result = replay(
        original.info.run_id, tracking_uri=finished.tracking_uri, storage_url=finished.storage
    )
    assert result.state == "COMPLETE"
    assert {d.name for d in result.diffs} == {"loss", "distance", "x_sq"}
    for diff in result.diffs:
        assert diff.abs_diff == pytest.approx(0.0, abs=1e-9), diff
        assert diff.rel_diff == pytest.approx(0.0, abs=1e-9), diff
    assert result.params == {"seed": 7, **best.params}
    assert isinstance(result.params["epochs"], int) and isinstance(result.params["x"], float)

    run = client.get_run(result.run_id)
    assert run.data.tags[Tag.REPLAY_OF] == original.info.run_id
    assert run.info.experiment_id == original.info.experiment_id
    assert "mlflow.parentRunId" not in run.data.tags  # a run of its own, not a sweep trial
    assert run.data.params == original.data.params
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(result.run_id, "loss")
    assert sorted({m.step for m in history}) == sorted(best.intermediate_values)


def test_replay_types_params_from_the_spec_without_the_study(finished):
    client = MlflowClient(finished.tracking_uri)
    for trial in finished.study.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        spec = parent_spec(client, run.data.tags["mlflow.parentRunId"])
        assert recover_params(run, spec) == {"seed": 7, **trial.params}


def test_replay_refuses_other_code_unless_forced(finished, tmp_path, orch):
    project = tmp_path / "elsewhere"
    project.mkdir()
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "other code"], check=True)
    run_id = finished.study.best_trial.user_attrs["mlflow_run_id"]

    refused = orch(
        "replay", run_id, "--project", str(project), "--workspace", str(finished.workspace)
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: replay: the sweep ran commit ")
    assert "--force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    forced = replay(
        run_id,
        tracking_uri=finished.tracking_uri,
        storage_url=finished.storage,
        project=project,
        force=True,
    )
    assert any(w.startswith("replaying anyway (--force)") for w in forced.warnings)
    assert all(d.abs_diff == pytest.approx(0.0, abs=1e-9) for d in forced.diffs)
