"""``orch status`` (running trials, node, GPU, ETA, --watch) and ``orch best`` (links, Pareto)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import optuna
import ray
from typer.testing import CliRunner

from orchestrator import sweep
from orchestrator.cli import app
from orchestrator.cli._tables import short
from orchestrator.results import StatusReader, mlflow_ui
from orchestrator.tracking import RunLink
from tests.conftest import REPO
from tests.helpers import on_pty, study_so_far
from tests.results.conftest import ENV, ORCH, spec_of

LIVE = """
name: live
job: tests.jobs_for_tests:sleepy
objective: {metric: loss}
trials: 3
parallel: 2
sampler: {type: random, seed: 0}
space:
  x: {type: float, low: 0.0, high: 1.0}
fixed: {seconds: 3}
"""


def test_status_of_a_running_sweep_shows_where_its_trials_run(ray_local, tmp_path):
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sweep(spec_of(LIVE), workspace=tmp_path, log_to_driver=False, report=False)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    reader = StatusReader(
        storage_url=f"sqlite:///{tmp_path}/optuna.db",
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )
    seen = None
    deadline = time.monotonic() + 120
    while seen is None and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.3)
        if study_so_far(tmp_path, "live") is None:  # opening it now would race its creation
            continue
        (status,) = reader.read("live")
        if status.finished >= 1 and status.running and all(t.node for t in status.running):
            seen = status
            table = CliRunner().invoke(app, ["status", "live", "--workspace", str(tmp_path)])
    thread.join(timeout=120)
    assert not errors, errors
    assert seen is not None, "never saw a finished and a running trial at once"
    assert seen.state == "running" and seen.target == 3 and seen.parallel == 2
    trial = seen.running[0]
    assert trial.node == ray.util.get_node_ip_address()
    assert trial.gpu_ids == ""  # CPU trials: no GPU assigned
    assert trial.attempt == 0 and trial.mlflow_run_id
    assert 0 <= trial.elapsed_s < 60
    assert seen.mean_duration_s >= 3 and 0 <= seen.eta_s <= 2 * seen.mean_duration_s
    assert table.exit_code == 0, table.output
    assert "running trials" in table.output and trial.node in table.output

    done = reader.read("live")[0]
    assert done.state == "done" and done.finished == 3 and not done.running
    assert done.eta_s is None


def test_status_and_best_print_json_for_scripts(finished, front):
    study = finished.study
    runner = CliRunner()
    shown = runner.invoke(app, ["status", "--json", "--workspace", str(finished.workspace)])
    assert shown.exit_code == 0, shown.output
    (status,) = json.loads(shown.output)["studies"]
    assert status["study"] == "results" and status["state"] == "done"
    assert status["finished"] == status["target"] == 8
    assert status["counts"]["COMPLETE"] == len(
        [t for t in study.trials if t.state.name == "COMPLETE"]
    )
    assert status["best_trials"][0]["number"] == study.best_trial.number

    best = runner.invoke(
        app, ["best", "results", "--top", "3", "--json", "--workspace", str(finished.workspace)]
    )
    assert best.exit_code == 0, best.output
    data = json.loads(best.output)
    numbers = [t["number"] for t in data["best_trials"]]
    ranked = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert numbers == [t.number for t in ranked[:3]]
    link = data["best_trials"][0]["mlflow_run"]
    assert link["run_id"] == study.best_trial.user_attrs["mlflow_run_id"]
    assert link["tracking_uri"] == finished.tracking_uri and link["url"] is None
    assert link["path"] == f"#/experiments/{link['experiment_id']}/runs/{link['run_id']}"
    # Links to `orch ui`'s default address (a local store has no server of its own).
    assert data["ui_url"] == "http://127.0.0.1:5000" and data["ui_served_by"] == "orch ui"
    assert link["ui_url"] == f"http://127.0.0.1:5000/#/runs/{link['run_id']}"
    assert_compare_url(
        data["compare_url"],
        base="http://127.0.0.1:5000",
        runs=[t["mlflow_run"]["run_id"] for t in data["best_trials"]],
        experiments=[link["experiment_id"]],
    )

    pareto = runner.invoke(app, ["best", "front", "--workspace", str(front.workspace)])
    assert pareto.exit_code == 0, pareto.output
    assert "Pareto front of front" in pareto.output
    for trial in front.study.best_trials:
        assert trial.user_attrs["mlflow_run_id"] in pareto.output


def assert_compare_url(url: str, *, base: str, runs: list[str], experiments: list[str]) -> None:
    """MLflow 3's compare-runs route: ``#/compare-runs?runs=[...]&experiments=[...]`` (JSON)."""
    page, _, query = url.partition("?")
    assert page == f"{base}/#/compare-runs"
    fields = urllib.parse.parse_qs(query)
    assert json.loads(fields["runs"][0]) == runs and len(runs) > 1
    assert json.loads(fields["experiments"][0]) == experiments
    assert not set('"[] ') & set(url)  # percent-encoded: terminals see one link


def test_run_links_are_clickable_for_tracking_servers():
    link = RunLink("http://mlflow.lab:5000/", "3", "abc123")
    assert link.url == "http://mlflow.lab:5000/#/experiments/3/runs/abc123"
    assert RunLink("sqlite:///x.db", "3", "abc123").url is None
    server = mlflow_ui("http://mlflow.lab:5000/")
    assert (server.url, server.served_by) == ("http://mlflow.lab:5000", "tracking server")
    assert server.run("abc123") == "http://mlflow.lab:5000/#/runs/abc123"
    given = mlflow_ui("sqlite:///x.db", "http://127.0.0.1:5001/")
    assert (given.url, given.served_by) == ("http://127.0.0.1:5001", "given")
    assert_compare_url(
        given.compare(["3"], ["a", "b"]), base=given.url, runs=["a", "b"], experiments=["3"]
    )


def test_status_watch_redraws_until_ctrl_c(finished):
    watch = subprocess.Popen(
        [*ORCH, "status", "--watch", "--interval", "0.5", "--workspace", str(finished.workspace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**ENV, "FORCE_COLOR": "1"},  # a terminal as far as rich knows: every redraw shows
    )
    try:
        shown = b""
        deadline = time.monotonic() + 120
        while shown.count(b"Ctrl-C to stop") < 2 and time.monotonic() < deadline:
            chunk = os.read(watch.stdout.fileno(), 65536)
            if not chunk:
                break
            shown += chunk
        assert shown.count(b"Ctrl-C to stop") >= 2, shown[-2000:]  # drawn, then redrawn
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
    finally:
        watch.kill()
    assert watch.returncode == 0, err
    assert b"Traceback" not in err
    assert b"results" in shown + out


def test_reading_an_empty_workspace_creates_nothing(tmp_path, orch):
    for args in (["best", "nope"], ["export", "nope", "-o", str(tmp_path / "t.csv")]):
        done = orch(*args, "--workspace", str(tmp_path))
        assert done.returncode == 2
        assert done.stderr.startswith("error: no study 'nope': no study storage at ")
    done = orch("status", "--workspace", str(tmp_path))
    assert done.returncode == 2 and "run a sweep first" in done.stderr
    assert list(tmp_path.iterdir()) == []


def _many_params_study(workspace):
    """A study with long param names: 3 complete, 1 waiting, 1 interrupted (no Ray needed)."""
    study = optuna.create_study(study_name="wide", storage=f"sqlite:///{workspace}/optuna.db")
    for i in range(3):
        trial = study.ask()
        for k in range(6):
            trial.suggest_float(f"parameter_number_{k}", 0.0, 1.0)
        trial.suggest_categorical("solver_name", ["anderson_acceleration", "broyden_method"])
        study.tell(trial, 0.5 + i)
    interrupted = study.ask()
    interrupted.set_user_attr("orch.interrupted", True)
    study.tell(interrupted, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({"parameter_number_0": 0.5})  # WAITING
    return study


def _table_lines(text):
    return [line for line in text.splitlines() if line[:1] in set("┏┃┡│└")]


def test_tables_fit_80_columns_on_a_terminal_and_piped_wrapping_between_params(tmp_path):
    study = _many_params_study(tmp_path)
    env = {**ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    args = [*ORCH, "best", "wide", "--top", "3", "--workspace", str(tmp_path)]
    code, shown = on_pty(args, env=env, cwd=tmp_path)
    piped = subprocess.run(
        args, capture_output=True, text=True, cwd=tmp_path, env={**env, "COLUMNS": ""}
    )
    for text in (shown, piped.stdout):
        lines = _table_lines(text)
        assert lines and all(len(line) <= 80 for line in lines), text
        cells = " ".join(line.split("│")[3] for line in lines if line.startswith("│"))
        for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
            for name, value in trial.params.items():  # whole on one line, never cut
                assert f"{name}={short(value)}" in cells, text
    assert code == 0 and piped.returncode == 0, piped.stderr

    args = [*ORCH, "status", "--workspace", str(tmp_path)]
    code, shown = on_pty(args, env=env, cwd=tmp_path)
    piped = subprocess.run(
        args, capture_output=True, text=True, cwd=tmp_path, env={**env, "COLUMNS": ""}
    )
    for text in (shown, piped.stdout):
        lines = _table_lines(text)
        assert lines and all(len(line) <= 80 for line in lines), text
        headers = [cell.strip() for cell in lines[1].strip("┃").split("┃")]
        assert headers == ["study", "state", "done", "trials", "best", "ETA"], text
        row = lines[3]
        assert "1 waiting" in text and "1 interrupted" in text and "3 complete" in text, text
        assert row.startswith("│ wide ")
    assert code == 0 and piped.returncode == 0, piped.stderr


def test_a_finished_sweep_links_its_best_runs_without_importing_mlflow(finished):
    """``orch sweep`` prints its best runs' links from the experiment id its tracker wrote to:
    the same links ``orch best`` looks up, and the driver never imports MLflow for them (that
    import took ~2 s at the end of every sweep)."""
    from mlflow import MlflowClient

    from orchestrator.results import add_links

    result = finished.result
    experiment = MlflowClient(finished.tracking_uri).get_experiment_by_name("results")
    assert result.experiment_id == experiment.experiment_id
    given = add_links(
        result.to_dict(), tracking_uri=finished.tracking_uri, experiment_id=result.experiment_id
    )
    looked_up = add_links(result.to_dict(), tracking_uri=finished.tracking_uri)
    assert given == looked_up and given["best_trials"][0]["mlflow_run"]
    code = (
        "import sys\n"
        "import orchestrator.cli.sweep, orchestrator._sweep\n"
        "from orchestrator.results import add_links, mlflow_ui\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'matplotlib')))\n"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert imported.stdout.strip() == "[]", imported.stdout[:500]
