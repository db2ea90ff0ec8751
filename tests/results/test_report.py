"""Plots and the summary page: at the end of a sweep, and with ``orch report``."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator._sweep import _log_report
from orchestrator.cli import app
from orchestrator.results import build_report
from tests.results.test_compare_replay import assert_png

REPO = str(Path(__file__).resolve().parents[2])


def assert_plotly_once(index):
    """The index carries plotly.js, once: the report stores it once in all (no .js, no pages)."""
    from plotly.offline import get_plotlyjs

    assert index.read_text().count(get_plotlyjs()[:2000]) == 1
    stored = [p for p in index.parent.rglob("*") if p.is_file()]
    assert all(p == index or p.suffix == ".png" for p in stored), stored


def assert_html(path, *needles):
    text = path.read_text()
    assert text.lstrip().lower().startswith("<!doctype html") or "<html" in text[:500], path
    assert text.rstrip().endswith("</html>"), path
    for needle in needles:
        assert needle in text, (path, needle)


def test_sweep_logs_its_report_on_the_parent_run(finished, tmp_path):
    client = MlflowClient(finished.tracking_uri)
    parent = finished.result.parent_run_id
    listed = {a.path for a in client.list_artifacts(parent, "report/plots")}
    for name in ("history", "importances", "parallel_coordinate", "slice", "intermediate_values"):
        assert f"report/plots/{name}.png" in listed, name
    folder = client.download_artifacts(parent, "report", str(tmp_path))
    assert_html(tmp_path / "report" / "index.html", "results", "Best trials", "plotly")
    assert_png(tmp_path / "report" / "plots" / "history.png")
    assert_plotly_once(tmp_path / "report" / "index.html")
    assert folder


def test_report_of_a_multi_objective_study(front, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the project root: nothing is written here
    result = CliRunner().invoke(app, ["report", "front", "--workspace", str(front.workspace)])
    assert result.exit_code == 0, result.output
    out = front.workspace / "reports" / "front"  # under the workspace by default
    assert list(tmp_path.iterdir()) == []
    names = [
        "history_error",
        "history_cost",
        "importances",
        "parallel_coordinate",
        "slice_error",
        "slice_cost",
        "pareto_front",
    ]
    for name in names:
        assert_png(out / "plots" / f"{name}.png")
        assert f'<section id="{name}">' in (out / "index.html").read_text()  # interactive there
    assert_plotly_once(out / "index.html")  # no CDN, no internet needed, stored once
    assert_html(out / "index.html", "Pareto front", "error (minimize)", "plots/pareto_front.png")
    for trial in front.study.best_trials:
        assert trial.user_attrs["mlflow_run_id"] in (out / "index.html").read_text()


def test_report_skips_what_a_small_study_cannot_show(tmp_path):
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=1)
    files = build_report(study, tmp_path / "out")
    assert (tmp_path / "out" / "index.html") in files
    assert_png(tmp_path / "out" / "plots" / "history.png")
    assert not (tmp_path / "out" / "plots" / "importances.png").exists()
    assert_html(tmp_path / "out" / "index.html", "needs at least 2 complete trials")


def test_a_report_that_cannot_be_logged_is_an_error_of_the_sweep_not_a_crash(finished):
    lost = dataclasses.replace(finished.result, parent_run_id="0" * 32, artifact_uri=None)
    errors = _log_report(lost)  # no such run in the tracking store
    assert len(errors) == 1 and errors[0].startswith("report: ")


def test_a_report_on_local_artifacts_is_logged_without_importing_mlflow(front):
    """What the sweep's report process does: it knows the run's artifact URI and experiment."""
    client = MlflowClient(front.result.tracking_uri)
    experiment = client.get_experiment_by_name("front")
    assert experiment is not None
    run = client.create_run(experiment.experiment_id, run_name="a parent run")
    client.set_terminated(run.info.run_id)
    job = {
        "storage": front.result.storage,
        "tracking_uri": front.result.tracking_uri,
        "parent_run_id": run.info.run_id,
        "experiment_id": experiment.experiment_id,
        "artifact_uri": run.info.artifact_uri,
    }
    code = (
        "import json, sys\n"
        "from orchestrator.results import log_report, read_study\n"
        "job = json.loads(sys.stdin.read())\n"
        "study = read_study(job.pop('storage'), 'front')\n"
        "files = log_report(study, **job)\n"
        "print(json.dumps({'files': files, 'mlflow': 'mlflow' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["mlflow"] is False
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert listed == {"report/index.html", "report/plots"}  # MLflow sees what was written
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "report/plots")}
    assert set(got["files"]) == listed - {"report/plots"} | plots
    index = client.download_artifacts(run.info.run_id, "report/index.html")
    page = Path(index).read_text()
    for trial in front.study.best_trials:  # each best trial's run named, MLflow not asked
        assert trial.user_attrs["mlflow_run_id"] in page


def test_orch_report_log_stores_it_on_the_parent_run(front, tmp_path):
    out = tmp_path / "out"
    args = ["report", "front", "--workspace", str(front.workspace), "--log", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    client = MlflowClient(front.result.tracking_uri)
    listed = {a.path for a in client.list_artifacts(front.result.parent_run_id, "report")}
    assert listed == {"report/index.html", "report/plots"}
    stored = client.list_artifacts(front.result.parent_run_id, "report/plots")
    assert {a.path.split("/")[-1] for a in stored} == {p.name for p in (out / "plots").iterdir()}
