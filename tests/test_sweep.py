"""End-to-end sweeps on a real local Ray, a real Optuna sqlite storage and a real MLflow store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from optuna.trial import TrialState

from orchestrator import StudyError, sweep
from tests.helpers import client, load, runs

pytestmark = pytest.mark.usefixtures("ray_local")


def assert_run_name(name: str, number: int, params: dict, mark: str = "") -> None:
    """``#7 [mark] x=1.46 shape=ridge``: the number, the mark, each param close to its value."""
    head = f"#{number} " + (f"{mark} " if mark else "")
    assert name.startswith(head), name
    shown = dict(item.split("=", 1) for item in name.removeprefix(head).split(" "))
    assert list(shown) == list(params), name
    for key, value in params.items():
        if isinstance(value, float):
            assert float(shown[key]) == pytest.approx(value, rel=5e-3, abs=5e-4), name
        else:
            assert shown[key] == str(value), name


def test_quadratic_sweep_tracks_every_trial(tmp_path):
    result = sweep("search_spaces/quadratic.yaml", workspace=tmp_path, trials=6)
    study = load(tmp_path, "quadratic")
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(study.trials) == 6 and len(finished) == 6
    assert result.counts["COMPLETE"] + result.counts["PRUNED"] == 6
    best = result.best_trials[0]
    assert best["number"] == study.best_trial.number
    assert best["values"] == {"loss": study.best_value}

    parent, children = runs(tmp_path, "quadratic")
    assert parent.info.run_id == result.parent_run_id
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["orch.best_trial"] == str(study.best_trial.number)
    spec_text = client(tmp_path).download_artifacts(parent.info.run_id, "spec.yaml", str(tmp_path))
    assert "jobs.quadratic:run" in Path(spec_text).read_text()
    assert len(children) == 6
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    for trial in study.trials:
        run = by_number[trial.number]
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.state"] == trial.state.name
        assert run.info.status == "FINISHED"
        assert run.data.params["epochs"] == "5"  # fixed params are logged too
        assert float(run.data.params["x"]) == pytest.approx(trial.params["x"])
        assert run.data.tags["orch.node_id"] and run.data.tags["orch.node_ip"]
        pruned = trial.state == TrialState.PRUNED
        assert_run_name(run.info.run_name, trial.number, trial.params, "[pruned]" * pruned)
        history = client(tmp_path).get_metric_history(run.info.run_id, "loss")
        reported = {s for s, _ in trial.intermediate_values.items()}
        assert {m.step for m in history} >= reported


def test_failing_trials_are_recorded_and_the_sweep_goes_on(tmp_path, write_spec):
    spec = write_spec(
        """
        name: modes
        job: tests.jobs_for_tests:by_mode
        objective: {metric: loss}
        trials: 8
        parallel: 4
        sampler: {type: grid}
        space:
          mode: {type: categorical, choices: [ok, raise, nan, missing, not_dict, diverge, artifact]}
        """
    )
    result = sweep(spec, workspace=tmp_path)
    study = load(tmp_path, "modes")
    assert len(study.trials) == 7  # the grid holds 7 points: the sweep stops there
    by_mode = {t.params["mode"]: t for t in study.trials}
    assert by_mode["ok"].state == TrialState.COMPLETE
    assert by_mode["artifact"].state == TrialState.COMPLETE
    reasons = {
        "raise": "RuntimeError: boom from the job",
        "nan": "objective metric 'loss' is nan",
        "missing": "objective metric 'loss' missing from the result (got other)",
        "not_dict": "job returned list, expected a dict",
    }
    for mode, reason in reasons.items():
        assert by_mode[mode].state == TrialState.FAIL, mode
        assert by_mode[mode].user_attrs["fail_reason"] == reason
    diverged = by_mode["diverge"]
    assert diverged.state == TrialState.PRUNED and diverged.user_attrs["diverged"] is True
    assert diverged.value == 1.0 and diverged.intermediate_values == {0: 1.0}  # last report
    assert result.counts == {**result.counts, "COMPLETE": 2, "FAIL": 4, "PRUNED": 1}

    _, children = runs(tmp_path, "modes")
    by_run = {r.info.run_id: r for r in children}
    for mode, reason in reasons.items():
        run = by_run[by_mode[mode].user_attrs["mlflow_run_id"]]
        assert run.info.status == "FAILED"
        assert run.data.tags["orch.fail_reason"] == reason
    for mode, trial in by_mode.items():  # the runs list tells failed and diverged trials apart
        mark = {"ok": "", "artifact": "", "diverge": "[diverged]"}.get(mode, "[failed]")
        name = by_run[trial.user_attrs["mlflow_run_id"]].info.run_name
        assert name == " ".join(filter(None, [f"#{trial.number}", mark, f"mode={mode}"]))
    raised = by_mode["raise"].user_attrs["mlflow_run_id"]
    artifacts = [a.path for a in client(tmp_path).list_artifacts(raised)]
    assert "traceback.txt" in artifacts
    diverged_run = by_run[diverged.user_attrs["mlflow_run_id"]]
    assert diverged_run.data.tags["orch.diverged"] == "true"
    assert "residual exploded" in diverged_run.data.tags["orch.fail_reason"]
    logged = by_mode["artifact"].user_attrs["mlflow_run_id"]
    folder = client(tmp_path).download_artifacts(logged, "", str(tmp_path / "dl"))
    assert Path(folder, "notes.txt").read_text() == "hello from the trial"
    assert "printed by the job" in Path(folder, "output.log").read_text()
    assert all(r.info.status != "RUNNING" for r in children)


def test_a_worker_that_dies_keeps_its_output_and_its_real_duration(tmp_path, write_spec):
    """The job prints, then its process ends at once (os._exit, as a segfault or an OOM kill):
    what it printed is on its run already, and the trial's duration is the time it ran."""
    spec = write_spec(
        """
        name: crashing
        job: tests.jobs_for_tests:exit_hard
        objective: {metric: loss}
        trials: 1
        retries: 0
        space: {x: {type: float, low: 0, high: 1}}
        """
    )
    sweep(spec, workspace=tmp_path)
    (trial,) = load(tmp_path, "crashing").trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["orch.duration_s"] >= 2.5
    run_id = trial.user_attrs["mlflow_run_id"]
    folder = client(tmp_path).download_artifacts(run_id, "", str(tmp_path / "dl"))
    assert "printed before the crash" in Path(folder, "output.log").read_text()


def test_a_large_artifact_travels_in_parts_and_arrives_whole(tmp_path, write_spec):
    spec = write_spec(
        """
        name: bigfile
        job: tests.jobs_for_tests:big_artifact
        objective: {metric: loss}
        trials: 1
        space: {x: {type: float, low: 0, high: 1}}
        """
    )
    sweep(spec, workspace=tmp_path)
    (trial,) = load(tmp_path, "bigfile").trials
    assert trial.state == TrialState.COMPLETE
    run_id = trial.user_attrs["mlflow_run_id"]
    local = client(tmp_path).download_artifacts(run_id, "big/blob.bin", str(tmp_path / "dl"))
    expected = b"".join(bytes([i + 1]) * 1_048_576 for i in range(9))
    assert Path(local).read_bytes() == expected


def test_pruner_stops_bad_trials_across_processes(tmp_path, write_spec):
    spec = write_spec(
        """
        name: pruning
        job: tests.jobs_for_tests:steps
        objective: {metric: loss}
        trials: 10
        parallel: 1
        sampler: {type: grid}
        pruner: {type: median, warmup_steps: 1, startup_trials: 3}
        space:
          x: {type: float, low: 0.0, high: 9.0, step: 1.0}
        fixed: {n_steps: 6}
        """
    )
    sweep(spec, workspace=tmp_path, overrides=["sampler.seed=3"])
    study = load(tmp_path, "pruning")
    states = [t.state for t in study.trials]
    assert states.count(TrialState.PRUNED) >= 3, states
    for trial in study.get_trials(states=(TrialState.PRUNED,)):
        assert max(trial.intermediate_values) < 5  # stopped before its last step
        assert trial.value == trial.intermediate_values[max(trial.intermediate_values)]
    _, children = runs(tmp_path, "pruning")
    pruned = [r for r in children if r.data.tags["optuna.state"] == "PRUNED"]
    assert pruned and all(r.info.status == "FINISHED" for r in pruned)
    for run in children:  # FINISHED either way: the name says which were pruned
        mark = "[pruned] " if run.data.tags["optuna.state"] == "PRUNED" else ""
        x = float(run.data.params["x"])
        assert run.info.run_name == f"#{run.data.tags['optuna.trial_number']} {mark}x={x:g}"


def test_concurrent_trials_lose_no_metric(tmp_path, write_spec):
    spec = write_spec(
        """
        name: concurrent
        job: tests.jobs_for_tests:steps
        objective: {metric: loss}
        trials: 4
        parallel: 4
        sampler: {type: random, seed: 0}
        space:
          x: {type: float, low: 0.0, high: 1.0}
        fixed: {n_steps: 50}
        """
    )
    sweep(spec, workspace=tmp_path)
    study = load(tmp_path, "concurrent")
    _, children = runs(tmp_path, "concurrent")
    assert len(children) == 4
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == list(range(50))
        run_id = trial.user_attrs["mlflow_run_id"]
        for metric in ("loss", "step_sq"):
            history = client(tmp_path).get_metric_history(run_id, metric)
            steps = sorted(m.step for m in history)
            assert set(range(50)) <= set(steps), (metric, len(steps))
        loss = {m.step: m.value for m in client(tmp_path).get_metric_history(run_id, "loss")}
        for step, value in trial.intermediate_values.items():
            assert loss[step] == pytest.approx(value)


def test_existing_study_needs_resume_and_resume_tops_up(tmp_path):
    first = sweep("search_spaces/quadratic.yaml", workspace=tmp_path, trials=3)
    with pytest.raises(StudyError, match=r"already exists .* add --resume"):
        sweep("search_spaces/quadratic.yaml", workspace=tmp_path, trials=5)
    second = sweep("search_spaces/quadratic.yaml", workspace=tmp_path, trials=5, resume=True)
    study = load(tmp_path, "quadratic")
    assert len(study.trials) == 5  # topped up from 3 to 5, not 3 + 5
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 5  # no draw replayed
    assert second.parent_run_id == first.parent_run_id
    parent, children = runs(tmp_path, "quadratic")
    assert len(children) == 5 and parent.info.status == "FINISHED"


def test_resume_closes_the_runs_of_a_sweep_that_never_recorded_its_parent(tmp_path):
    """A sweep lost with its database (tests/test_postgres_outage.py) may have opened a parent
    run and trial runs without recording the parent in the study: --resume closes them all,
    found by their study tags, and leaves other runs of the experiment alone."""
    sweep("search_spaces/quadratic.yaml", workspace=tmp_path, trials=2)
    c = client(tmp_path)
    experiment_id = c.get_experiment_by_name("quadratic").experiment_id
    lost_parent = c.create_run(
        experiment_id, run_name="quadratic", tags={"orch.study": "quadratic"}
    )
    lost_trials = [
        c.create_run(
            experiment_id,
            run_name=f"#{n} x=0.5",
            tags={
                "optuna.study_name": "quadratic",
                "optuna.trial_number": str(n),
                "mlflow.parentRunId": lost_parent.info.run_id,
            },
        )
        for n in (2, 3)
    ]
    users_own = c.create_run(experiment_id, run_name="a notebook's run")

    result = sweep("search_spaces/quadratic.yaml", workspace=tmp_path, trials=4, resume=True)

    status = {r.info.run_id: r for r in c.search_runs([experiment_id], max_results=100)}
    assert status[lost_parent.info.run_id].info.status == "FAILED"
    assert "interrupted" in status[lost_parent.info.run_id].data.tags["orch.fail_reason"]
    for run in lost_trials:
        closed = status[run.info.run_id]
        assert closed.info.status == "KILLED"
        assert closed.info.run_name.startswith(
            f"#{closed.data.tags['optuna.trial_number']} [interrupted]"
        )
    assert status[users_own.info.run_id].info.status == "RUNNING"
    assert status[result.parent_run_id].info.status == "FINISHED"


def test_multi_objective_reports_the_pareto_front(tmp_path, write_spec):
    spec = write_spec(
        """
        name: pareto
        job: tests.jobs_for_tests:two_objectives
        objective:
          - {metric: error, direction: minimize}
          - {metric: cost, direction: minimize}
        trials: 8
        sampler: {type: random, seed: 1}
        space:
          x: {type: float, low: 0.0, high: 1.0}
        """
    )
    result = sweep(spec, workspace=tmp_path)
    study = load(tmp_path, "pareto")
    front = {t.number for t in study.best_trials}
    assert {t["number"] for t in result.best_trials} == front
    assert all(set(t["values"]) == {"error", "cost"} for t in result.best_trials)
    assert all(t["mlflow_run_id"] for t in result.best_trials)


def test_trial_timeout_fails_the_trial_and_closes_its_run(tmp_path, write_spec):
    spec = write_spec(
        """
        name: slow
        job: tests.jobs_for_tests:sleepy
        objective: {metric: loss}
        trials: 2
        parallel: 2
        trial_timeout_s: 2
        sampler: {type: random, seed: 0}
        space:
          x: {type: float, low: 0.0, high: 1.0}
        fixed: {seconds: 60}
        """
    )
    sweep(spec, workspace=tmp_path)
    study = load(tmp_path, "slow")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert all(t.user_attrs["fail_reason"] == "timed out after 2s" for t in study.trials)
    _, children = runs(tmp_path, "slow")
    assert all(r.info.status == "FAILED" for r in children)


def test_worker_killed_mid_trial_is_retried_with_the_same_params(tmp_path, write_spec):
    spec = write_spec(
        """
        name: crashy
        job: tests.jobs_for_tests:crash_first_attempt
        objective: {metric: loss}
        trials: 2
        parallel: 2
        sampler: {type: random, seed: 0}
        space:
          x: {type: float, low: 0.0, high: 1.0}
        """
    )
    result = sweep(spec, workspace=tmp_path)
    assert result.counts["COMPLETE"] == 2
    study = load(tmp_path, "crashy")
    _, children = runs(tmp_path, "crashy")
    assert len(children) == 4  # one lost attempt and one good attempt per trial
    for trial in study.trials:
        assert trial.user_attrs["orch.attempts"] == 2
        attempts = [r for r in children if r.data.tags["optuna.trial_number"] == str(trial.number)]
        lost = next(r for r in attempts if r.data.tags["orch.attempt"] == "0")
        good = next(r for r in attempts if r.data.tags["orch.attempt"] == "1")
        assert lost.info.status == "FAILED"
        assert "WorkerCrashedError" in lost.data.tags["orch.fail_reason"]
        assert good.info.status == "FINISHED" and good.data.metrics["attempt"] == 1.0
        assert lost.data.params == good.data.params
        assert_run_name(lost.info.run_name, trial.number, trial.params, "[failed]")
        assert_run_name(good.info.run_name, trial.number, trial.params, "retry 1")
        assert math.isclose(float(good.data.params["x"]), trial.params["x"])


@pytest.mark.slow
def test_sixteen_trials_by_two_hundred_steps_keep_every_point(tmp_path, write_spec):
    spec = write_spec(
        """
        name: flood
        job: tests.jobs_for_tests:steps
        objective: {metric: loss}
        trials: 16
        parallel: 16
        resources: {cpus: 0.5}
        sampler: {type: random, seed: 0}
        space:
          x: {type: float, low: 0.0, high: 1.0}
        fixed: {n_steps: 200}
        """
    )
    sweep(spec, workspace=tmp_path)
    study = load(tmp_path, "flood")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 16
    points = 0
    mlflow = client(tmp_path)
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == list(range(200))
        history = mlflow.get_metric_history(trial.user_attrs["mlflow_run_id"], "loss")
        by_step = {m.step: m.value for m in history}
        for step, value in trial.intermediate_values.items():
            assert by_step[step] == pytest.approx(value)
            points += 1
    assert points == 3200


def test_journal_file_storage_works_like_sqlite(tmp_path):
    journal = tmp_path / "study.log"
    result = sweep(
        "search_spaces/quadratic.yaml", workspace=tmp_path, trials=3, storage=f"journal:{journal}"
    )
    assert journal.stat().st_size > 0
    assert result.storage == f"journal:{journal}"
    assert sum(result.counts[s] for s in ("COMPLETE", "PRUNED")) == 3
    assert not (tmp_path / "optuna.db").exists()


def test_job_exceptions_are_retried_only_when_the_spec_asks(tmp_path, write_spec):
    body = """
        name: {name}
        job: tests.jobs_for_tests:by_mode
        objective: {{metric: loss}}
        trials: 1
        retries: 2
        retry_exceptions: {retry}
        space:
          mode: {{type: categorical, choices: [raise]}}
        """
    for name, retry, attempts in (("plain", "false", 1), ("retried", "true", 3)):
        sweep(write_spec(body.format(name=name, retry=retry), f"{name}.yaml"), workspace=tmp_path)
        (trial,) = load(tmp_path, name).trials
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs["orch.attempts"] == attempts
        assert trial.user_attrs["fail_reason"] == "RuntimeError: boom from the job"
        _, children = runs(tmp_path, name)
        assert len(children) == attempts and all(r.info.status == "FAILED" for r in children)
