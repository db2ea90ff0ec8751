"""The `orch` console script as a user runs it: exit codes, one-line errors, JSON, Ctrl-C."""

from __future__ import annotations

import inspect
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import get_args, get_origin

import pytest
import typer
from optuna.trial import TrialState

from tests.helpers import load, runs, runs_so_far, study_so_far

REPO = Path(__file__).resolve().parent.parent
ORCH = str(Path(sys.executable).with_name("orch"))


def orch(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ORCH, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


BAD_SPECS = {
    "unknown field": (
        "name: a\njob: jobs.quadratic:run\nobjective: {metric: loss}\n"
        "space: {x: {type: float, low: 0, high: 1}}\nparalel: 3\n",
        "bad.yaml:5: paralel: unknown field",
    ),
    "stop_when": (
        "name: a\njob: jobs.quadratic:run\nobjective: {metric: loss}\n"
        "space: {x: {type: float, low: 0, high: 1}}\n"
        "stop_when:\n  - {metric: loss, below: 0.1, patience: 0}\n",
        "bad.yaml:6: stop_when[0].patience: Input should be greater than or equal to 1",
    ),
    "yaml": ("name: a\n  job: [\n", "bad.yaml:2:6: invalid YAML"),
    "missing module": (
        "name: a\njob: jobs.nope:run\nobjective: {metric: loss}\n"
        "space: {x: {type: float, low: 0, high: 1}}\n",
        "job 'jobs.nope:run': no module 'jobs.nope'",
    ),
    "missing function": (
        "name: a\njob: jobs.quadratic:walk\nobjective: {metric: loss}\n"
        "space: {x: {type: float, low: 0, high: 1}}\n",
        "job 'jobs.quadratic:walk': module jobs.quadratic has no attribute 'walk'",
    ),
    "billion laughs": (
        "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
        + "name: a\njob: jobs.quadratic:run\nobjective: {metric: loss}\n"
        "space: {x: {type: float, low: 0, high: 1}}\nfixed: {x2: *a9}\n",
        "bad.yaml: refused: expands to more than 100,000 values",
    ),
    "long name": (
        f"name: {'n' * 5000}\njob: jobs.quadratic:run\nobjective: {{metric: loss}}\n"
        "space: {x: {type: float, low: 0, high: 1}}\n",
        "bad.yaml:1: name: String should have at most 200 characters",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_validate_and_sweep_refuse_bad_specs_in_one_line_and_write_nothing(tmp_path, case):
    text, expected = BAD_SPECS[case]
    (tmp_path / "bad.yaml").write_text(text)
    for args in (["validate", "bad.yaml"], ["sweep", "bad.yaml", "--workspace", "ws"]):
        done = orch(*args, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no storage, no runs


def test_validate_accepts_the_examples_and_schema_is_json():
    done = orch("validate", "search_spaces/quadratic.yaml", "--set", "fixed.epochs=1")
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stderr
    schema = json.loads(orch("schema").stdout)
    assert schema["title"] == "orch sweep spec" and "space" in schema["properties"]


RUN_ORCH = """
import atexit, sys, threading, time
from pathlib import Path
from orchestrator.cli import run
atexit.register(print, "exit handler ran", flush=True)
if sys.argv[1] == "thread":  # a thread still working when the command ends is waited for
    def late(marker):
        time.sleep(0.5)
        marker.write_text("done")
    threading.Thread(target=late, args=(Path(sys.argv[2]),)).start()
sys.argv = ["orch", *sys.argv[3:]]
run()
"""


@pytest.mark.parametrize("case", ["plain", "thread"])
def test_the_console_script_exits_without_teardown_yet_runs_exit_handlers(tmp_path, case):
    """``orch`` (``cli.run``) skips the interpreter's teardown, not what an exit must do: exit
    handlers run, output is flushed whole, the exit status is kept, a live thread finishes."""
    marker = tmp_path / "thread-finished"
    for args, status in ((["schema"], 0), (["best", "nosuch", "--workspace", str(tmp_path)], 2)):
        done = subprocess.run(
            [sys.executable, "-c", RUN_ORCH, case, str(marker), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert done.returncode == status, done.stderr
        assert done.stdout.rstrip().endswith("exit handler ran"), done.stdout[-300:]
        if status == 0:
            schema = json.loads(done.stdout.rstrip().removesuffix("exit handler ran"))
            assert schema["title"] == "orch sweep spec"
        else:
            assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert marker.exists() == (case == "thread")


def test_bad_set_and_unknown_study_are_one_line_errors(tmp_path):
    done = orch("validate", str(REPO / "search_spaces/quadratic.yaml"), "--set", "trials")
    assert done.returncode == 2 and "expected key=value" in done.stderr
    done = orch("best", "nope", "--workspace", str(tmp_path))
    assert done.returncode == 2 and "no study 'nope'" in done.stderr
    assert "Traceback" not in done.stderr


def test_sweep_json_prints_one_object_then_status_and_best_read_it(tmp_path):
    done = orch(
        "sweep",
        "search_spaces/quadratic.yaml",
        "--trials",
        "4",
        "--parallel",
        "2",
        "--workspace",
        str(tmp_path),
        "--set",
        "fixed.epochs=2",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["study"] == "quadratic"
    assert sum(summary["counts"][s] for s in ("COMPLETE", "PRUNED", "FAIL")) == 4
    best = summary["best_trials"][0]
    assert set(best) >= {"number", "params", "values", "mlflow_run_id"}
    assert summary["parent_run_id"]
    parent, children = runs(tmp_path, "quadratic")
    assert parent.info.run_id == summary["parent_run_id"] and len(children) == 4
    assert all(r.data.params["epochs"] == "2" for r in children)

    status = json.loads(orch("status", "--workspace", str(tmp_path), "--json").stdout)
    assert [s["study"] for s in status["studies"]] == ["quadratic"]
    top = json.loads(orch("best", "quadratic", "--workspace", str(tmp_path), "--json").stdout)
    assert top["best_trials"][0]["number"] == best["number"]


def _start_sleepy_sweep(tmp_path: Path, *extra: str) -> subprocess.Popen:
    spec = tmp_path / "sleepy.yaml"
    spec.write_text(
        "name: sleepy\njob: tests.jobs_for_tests:sleepy\nobjective: {metric: loss}\n"
        "trials: 4\nparallel: 2\nsampler: {type: random, seed: 0}\n"
        "space: {x: {type: float, low: 0, high: 1}}\nfixed: {seconds: 120}\n"
    )
    return subprocess.Popen(
        [ORCH, "sweep", str(spec), "--workspace", str(tmp_path / "ws"), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _wait_running(tmp_path: Path, count: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        study = study_so_far(tmp_path / "ws", "sleepy")
        if study is not None:
            running = study.get_trials(states=(TrialState.RUNNING,))
            # The tracker may still be starting while the first trials run: wait for their runs.
            found = runs_so_far(tmp_path / "ws", "sleepy")
            open_runs = [r for r in found[1] if r.info.status == "RUNNING"] if found else []
            if (
                len(running) >= count
                and all(t.intermediate_values for t in running)
                and len(open_runs) >= count
            ):
                return
        time.sleep(0.5)
    raise AssertionError("trials never started")


@pytest.mark.slow
def test_ctrl_c_closes_trials_and_runs_then_resume_finishes(tmp_path):
    proc = _start_sleepy_sweep(tmp_path)
    _wait_running(tmp_path, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    study = load(tmp_path / "ws", "sleepy")
    states = [t.state for t in study.trials]
    assert states.count(TrialState.FAIL) == 2 and states.count(TrialState.WAITING) == 2
    assert all(
        t.user_attrs.get("orch.interrupted") for t in study.get_trials(states=(TrialState.FAIL,))
    )
    parent, children = runs(tmp_path / "ws", "sleepy")
    assert parent.info.status == "KILLED"
    assert len(children) == 2 and all(r.info.status == "KILLED" for r in children)
    for run in children:  # the runs list tells them apart: `#1 [interrupted] x=0.72`
        number = run.data.tags["optuna.trial_number"]
        assert run.info.run_name.startswith(f"#{number} [interrupted] x="), run.info.run_name
    interrupted = {t.number: t.params for t in study.get_trials(states=(TrialState.FAIL,))}

    done = orch(
        "sweep",
        str(tmp_path / "sleepy.yaml"),
        "--workspace",
        str(tmp_path / "ws"),
        "--resume",
        "--set",
        "fixed.seconds=0",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    study = load(tmp_path / "ws", "sleepy")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4  # topped up to `trials` finished, interrupted ones not counted
    reruns = {
        t.user_attrs["orch.rerun_of"]: t.params for t in complete if "orch.rerun_of" in t.user_attrs
    }
    assert reruns == interrupted  # the interrupted param sets ran again, once each
    parent_after, children = runs(tmp_path / "ws", "sleepy")
    assert parent_after.info.run_id == parent.info.run_id and parent_after.info.status == "FINISHED"
    assert all(r.info.status != "RUNNING" for r in children)


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once_and_resume_recovers(tmp_path):
    proc = _start_sleepy_sweep(tmp_path)
    _wait_running(tmp_path, 2, proc)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True)
    reader.start()
    os.killpg(proc.pid, signal.SIGINT)
    seen = ""
    while "Ctrl-C again" not in seen:  # the first Ctrl-C was handled: its graceful end began
        seen = lines.get(timeout=60)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    stderr = "".join(lines.queue)
    assert proc.returncode == 130
    # Out at once: the driver's graceful end (parent run closed, a resume hint) never ran.
    assert "--resume" not in stderr
    study = load(tmp_path / "ws", "sleepy")  # storage still loads
    parent, children = runs(tmp_path / "ws", "sleepy")
    assert parent.info.status == "RUNNING"
    # The first Ctrl-C's calls already sent to the tracker may have closed some trials' runs
    # before Ray went down with the driver; the resume closes the rest.
    open_ids = {r.info.run_id for r in children if r.info.status == "RUNNING"}
    done = orch(
        "sweep",
        str(tmp_path / "sleepy.yaml"),
        "--workspace",
        str(tmp_path / "ws"),
        "--resume",
        "--set",
        "fixed.seconds=0",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    study = load(tmp_path / "ws", "sleepy")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    resumed, children = runs(tmp_path / "ws", "sleepy")
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    assert len(children) >= 4 and all(r.info.status != "RUNNING" for r in children)
    for run in children:  # the runs the resume closed are marked like a first Ctrl-C's
        if run.info.run_id in open_ids:
            assert run.info.run_name.split()[1] == "[interrupted]", run.info.run_name


#: A value other than the default, for each type an `orch sweep` option may have.
SAMPLES = {bool: True, int: 3, float: 0.5, str: "x", Path: Path("x")}


def _sample(annotation: object) -> object:
    """A non-default value for an option annotated ``Annotated[T | None, typer.Option]``."""
    kind = get_args(annotation)[0]
    kind = next((k for k in get_args(kind) if k is not type(None)), kind)
    if get_origin(kind) is list:
        return [SAMPLES[get_args(kind)[0]]] * 2
    return SAMPLES[kind]


def test_submit_takes_and_forwards_every_sweep_option() -> None:
    from orchestrator.cli import app
    from orchestrator.cli._forward import as_arguments
    from orchestrator.cli.sweep import sweep_command

    group = typer.main.get_command(app)
    sweep, submit = group.commands["sweep"], group.commands["submit"]  # type: ignore[attr-defined]
    flags = {p.name: p.opts[0] for p in sweep.params}
    values = {
        name: _sample(param.annotation)
        for name, param in inspect.signature(sweep_command, eval_str=True).parameters.items()
        if name not in ("spec", "address")
    }
    words = []
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            words += [flags[name]] if item is True else [flags[name], str(item)]
    taken = submit.make_context("submit", ["spec.yaml", *words]).params
    assert {name: taken[name] for name in values} == values
    # What submit sends to the head, `orch sweep` reads back as the same values.
    forwarded = as_arguments(sweep_command, values)
    on_head = sweep.make_context("sweep", ["spec.yaml", *forwarded]).params
    assert {name: on_head[name] for name in values} == values


#: Each kind of usage error: the words after the command, and the error line (Typer's wording
#: varies by version: "No such option: --bogus" with its vendored click, "'--bogus'." before).
USAGE_ERRORS = {
    "unknown option": (["SPEC", "--bogus"], r"Error: No such option\W+--bogus"),
    "missing argument": (["--trials", "3"], r"Error: Missing argument 'SPEC'\."),
    "bad option value": (["SPEC", "--trials", "many"], r"Error: Invalid value for '--trials'"),
}


@pytest.mark.parametrize("command", ["sweep", "submit"])
@pytest.mark.parametrize("kind", sorted(USAGE_ERRORS))
def test_usage_errors_are_a_usage_line_and_exit_2(tmp_path, command, kind):
    words, expected = USAGE_ERRORS[kind]
    spec = str(REPO / "search_spaces/quadratic.yaml")
    done = orch(command, *(spec if w == "SPEC" else w for w in words), cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"Usage: orch {command} [OPTIONS]"), done.stderr
    assert re.match(expected, lines[-1]), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


def _spec(tmp_path: Path, name: str, job: str, extra: str = "") -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\njob: tests.jobs_for_tests:{job}\nobjective: {{metric: loss}}\n"
        "trials: 3\nparallel: 1\nsampler: {type: random, seed: 0}\n"
        f"space: {{x: {{type: float, low: 0, high: 1}}}}\n{extra}"
    )
    return spec


def _no_run_left_open(workspace: Path, name: str) -> None:
    study = load(workspace, name)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    parent, children = runs(workspace, name)
    assert parent.info.status != "RUNNING"
    assert [r.info.run_name for r in children if r.info.status == "RUNNING"] == []


def test_a_sweep_in_which_no_trial_completed_exits_5_with_a_summary_line(tmp_path):
    spec = _spec(tmp_path, "doomed", "by_mode", "fixed: {mode: raise}\n")
    done = orch("sweep", str(spec), "--workspace", str(tmp_path / "ws"))
    assert done.returncode == 5, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "no trial of doomed completed (3 fail); first failure: trial 0: "
        "RuntimeError: boom from the job"
    )
    assert "Traceback" not in done.stderr
    # The report's process, started with the sweep, ended without writing (nothing to report).
    assert not list((tmp_path / "ws" / "logs").glob("report-*"))
    as_json = orch("sweep", str(spec), "--workspace", str(tmp_path / "ws2"), "--json")
    assert as_json.returncode == 5
    assert json.loads(as_json.stdout)["first_failure"].startswith("trial 0: RuntimeError")


def test_a_failed_report_is_a_sweep_problem_the_exit_code_shows(tmp_path):
    spec = _spec(tmp_path, "blocked", "block_report", "fixed: {study: blocked}\n")
    done = orch("sweep", str(spec), "--workspace", str(tmp_path / "ws"))
    assert done.returncode == 4, done.stderr
    assert "tracking problem: report:" in done.stderr
    (log,) = (tmp_path / "ws" / "logs").glob("report-blocked-*.log")  # the report's own log
    last = log.read_text().splitlines()[-1]  # the reason names the file in the folder's place
    assert last.startswith("report failed: FileExistsError") and "artifacts/report" in last
    parent, _ = runs(tmp_path / "ws", "blocked")
    assert parent.data.tags["orch.report_error"] == last.removeprefix("report failed: ")
    assert "blocked: the sweep finished with 1 problem(s)" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert load(tmp_path / "ws", "blocked").best_value is not None  # the trials are recorded
    _no_run_left_open(tmp_path / "ws", "blocked")


@pytest.mark.slow
def test_a_lost_study_hub_closes_every_run_without_a_traceback_then_resume_finishes(tmp_path):
    spec = _spec(tmp_path, "hubless", "kill_hub")
    done = orch("sweep", str(spec), "--workspace", str(tmp_path / "ws"))
    assert done.returncode == 3, done.stderr  # the sweep's Ray actors are lost, like Ray
    lines = done.stderr.strip().splitlines()
    assert "lost the local Ray mid-sweep: the sweep's Ray actors are unreachable" in done.stderr
    assert lines[-1].startswith("continue with: orch sweep") and lines[-1].endswith("--resume")
    assert "Traceback" not in done.stderr + done.stdout
    _no_run_left_open(tmp_path / "ws", "hubless")
    resumed = orch(
        "sweep",
        str(spec),
        "--workspace",
        str(tmp_path / "ws"),
        "--resume",
        "--set",
        "job=tests.jobs_for_tests:by_mode",
        "--set",
        "fixed.mode=ok",
    )
    assert resumed.returncode == 0, resumed.stderr
    _no_run_left_open(tmp_path / "ws", "hubless")


def test_a_sweep_on_a_tracking_server_uploads_its_report_through_it(tmp_path):
    """The report's process imports MLflow for a server's proxied artifacts (mlflow-artifacts:)."""
    from mlflow import MlflowClient

    from orchestrator.results import start_mlflow_ui

    store = f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}"
    (tmp_path / "server").mkdir()
    MlflowClient(store).search_experiments()  # an empty store for the server
    spec = _spec(tmp_path, "served", "by_mode", "fixed: {mode: ok}\n")
    with start_mlflow_ui(tracking_uri=store, port=0) as server:
        done = orch(
            "sweep",
            str(spec),
            "--workspace",
            str(tmp_path / "ws"),
            "--json",
            "--tracking-uri",
            server.url,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["artifact_uri"].startswith("mlflow-artifacts:/")
        client = MlflowClient(server.url)
        listed = {a.path for a in client.list_artifacts(result["parent_run_id"], "report")}
    assert listed == {"report/index.html", "report/plots"}
    (log,) = (tmp_path / "ws" / "logs").glob("report-served-*.log")
    assert log.read_text().splitlines()[-1].startswith("report of 'served': ")
