"""Plots and the summary page: at the end of a sweep, and with ``orch report``."""

from __future__ import annotations

import optuna
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator._sweep import _log_report
from orchestrator.cli import app
from orchestrator.results import build_report
from orchestrator.workspace import resolve_locations
from tests.results.test_compare_replay import assert_png


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
    where = resolve_locations(workspace=finished.workspace)
    errors = _log_report("results", where, parent_run_id="0" * 32)  # no such run
    assert len(errors) == 1 and errors[0].startswith("report: ")
