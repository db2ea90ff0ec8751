"""The distributed guarantees with both stores on PostgreSQL, as on sqlite (test_multinode.py,
test_sweep.py): a node killed mid-sweep, the driver killed then --resume, 16 trials x 200
reports. Real multi-node Ray clusters (tests/raycluster.py), a real server (tests/postgres.py);
what a sweep left is read back from PostgreSQL. The URLs travel in the environment
(``ORCH_STORAGE``, ``MLFLOW_TRACKING_URI``), never on a command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import TrialState

from tests.postgres import PgDatabases
from tests.raycluster import LocalCluster
from tests.test_multinode import ORCH, REPO, spec_file

pytestmark = pytest.mark.slow


def pg_sweep(
    spec: Path, cluster: LocalCluster, dbs: PgDatabases, *extra: str, popen: bool = False
) -> subprocess.Popen[str] | subprocess.CompletedProcess[str]:
    """``orch sweep SPEC --address CLUSTER --json`` with both stores on ``dbs``."""
    client = MlflowClient(dbs.tracking)
    if client.get_experiment_by_name(spec.stem) is None:  # artifacts in the test's folder
        client.create_experiment(spec.stem, artifact_location=(spec.parent / "art").as_uri())
    args = [ORCH, "sweep", str(spec), "--address", cluster.address, "--json", *extra]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ORCH_STORAGE": dbs.storage,
        "MLFLOW_TRACKING_URI": dbs.tracking,
        "ORCH_WORKSPACE": str(spec.parent / "ws"),
        **cluster.client_env,
    }
    if popen:
        return subprocess.Popen(
            args, cwd=REPO, env=env, start_new_session=True, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def study_so_far(dbs: PgDatabases, name: str) -> optuna.Study | None:
    """Study ``name`` once the sweep created it (None before: no tables or no such study)."""
    try:
        found = dbs.server.execute(
            f"SELECT 1 FROM studies WHERE study_name = '{name}'", dbs.storage_db
        )
    except Exception:  # the sweep has not created Optuna's tables yet
        return None
    return optuna.load_study(study_name=name, storage=dbs.storage) if found else None


def runs(dbs: PgDatabases, name: str) -> tuple[Run | None, list[Run]]:
    """The parent run and the child runs of experiment ``name``."""
    client = MlflowClient(dbs.tracking)
    experiment = client.get_experiment_by_name(name)
    found = client.search_runs([experiment.experiment_id], max_results=10000)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) <= 1, [r.info.run_name for r in parents]
    return (parents[0] if parents else None), [r for r in found if r not in parents]


def running_node(dbs: PgDatabases, name: str) -> str | None:
    for run in runs(dbs, name)[1]:
        if run.info.status == "RUNNING" and "test_node" in run.data.tags:
            return run.data.tags["test_node"]
    return None


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    made = LocalCluster()
    yield made
    made.shutdown()


def test_node_killed_mid_trial_is_retried_on_another_node(
    tmp_path: Path, cluster: LocalCluster, pg_db: PgDatabases
) -> None:
    cluster.add_node("head", cpus=0)
    nodes = {
        "a": cluster.add_node("a", cpus=2, resources={"trial_slot": 2}),
        "b": cluster.add_node("b", cpus=2, resources={"trial_slot": 2}),
    }
    spec = spec_file(
        tmp_path,
        "pg-nodefail",
        "trials: 4\nparallel: 2\nresources: {cpus: 1, custom: {trial_slot: 1}}\n"
        "fixed: {seconds: 12}\n",
    )
    proc = pg_sweep(spec, cluster, pg_db, popen=True)
    assert isinstance(proc, subprocess.Popen)
    deadline = time.time() + 180
    victim = None
    while victim is None and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if study_so_far(pg_db, "pg-nodefail") is not None:
            victim = running_node(pg_db, "pg-nodefail")
        time.sleep(0.5)
    assert victim, "no trial started"
    nodes[victim].kill()
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out)["counts"]["COMPLETE"] == 4
    rows = pg_db.server.execute(
        "SELECT state, count(*) FROM trials GROUP BY state", pg_db.storage_db
    )
    assert rows == [("COMPLETE", 4)]
    _, children = runs(pg_db, "pg-nodefail")
    lost = [r for r in children if r.info.status == "FAILED"]
    assert lost, "the killed node's attempt was not recorded"
    for run in lost:
        assert run.data.tags["test_node"] == victim
        reason = run.data.tags["orch.fail_reason"]
        assert any(k in reason for k in ("NodeDied", "WorkerCrashed", "LocalRayletDied")), reason
        number = run.data.tags["optuna.trial_number"]
        retry = [
            r
            for r in children
            if r.data.tags["optuna.trial_number"] == number and r.info.status == "FINISHED"
        ]
        assert len(retry) == 1 and retry[0].data.params == run.data.params
        assert retry[0].data.tags["test_node"] != victim
    assert all(r.info.status in ("FINISHED", "FAILED") for r in children)


def test_driver_killed_then_resume_tops_up_without_repeating(
    tmp_path: Path, cluster: LocalCluster, pg_db: PgDatabases
) -> None:
    cluster.add_node("head", cpus=4)
    spec = spec_file(tmp_path, "pg-driverdies", "trials: 6\nparallel: 2\nfixed: {seconds: 4}\n")
    proc = pg_sweep(spec, cluster, pg_db, popen=True)
    assert isinstance(proc, subprocess.Popen)
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        study = study_so_far(pg_db, "pg-driverdies")
        if (
            study is not None
            and len(study.get_trials(states=(TrialState.COMPLETE,))) >= 2
            and study.get_trials(states=(TrialState.RUNNING,))
        ):
            break
        time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: the cluster lives on
    proc.communicate(timeout=60)
    before = study_so_far(pg_db, "pg-driverdies")
    assert before is not None
    kept = {t.number: t.values for t in before.get_trials(states=(TrialState.COMPLETE,))}
    orphaned = {t.number: t.params for t in before.get_trials(states=(TrialState.RUNNING,))}
    assert kept and orphaned

    done = pg_sweep(spec, cluster, pg_db, "--resume", "--set", "fixed.seconds=0.2")
    assert done.returncode == 0, done.stderr[-3000:]
    study = study_so_far(pg_db, "pg-driverdies")
    assert study is not None
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6  # tops up to `trials`, not another 6
    for number, values in kept.items():
        assert study.trials[number].values == values
    for number in orphaned:
        closed = study.trials[number]
        assert closed.state == TrialState.FAIL and closed.user_attrs["orch.interrupted"]
    reruns = {
        t.user_attrs["orch.rerun_of"]: t.params for t in complete if "orch.rerun_of" in t.user_attrs
    }
    assert reruns == orphaned  # orphaned param sets ran again, once each
    others = [
        tuple(sorted(t.params.items())) for t in complete if "orch.rerun_of" not in t.user_attrs
    ]
    assert len(set(others)) == len(others)  # no param set evaluated twice
    parent, children = runs(pg_db, "pg-driverdies")
    assert parent is not None and parent.info.status == "FINISHED"
    assert all(r.info.status != "RUNNING" for r in children)
    client = MlflowClient(pg_db.tracking)
    for t in complete:
        assert client.get_metric_history(t.user_attrs["mlflow_run_id"], "loss")


def test_sixteen_trials_by_two_hundred_steps_keep_every_point(
    tmp_path: Path, cluster: LocalCluster, pg_db: PgDatabases
) -> None:
    cluster.add_node("head", cpus=0)
    cluster.add_node("a", cpus=4)
    cluster.add_node("b", cpus=4)
    spec = tmp_path / "pg-flood.yaml"
    spec_file(tmp_path, "unused", "")  # the project folder: pyproject.toml, cluster_jobs.py
    spec.write_text(
        "name: pg-flood\njob: cluster_jobs:steps\nobjective: {metric: loss}\n"
        "trials: 16\nparallel: 16\nresources: {cpus: 0.5}\nsampler: {type: random, seed: 0}\n"
        "space: {x: {type: float, low: 0.0, high: 1.0}}\nfixed: {n_steps: 200}\n"
    )
    done = pg_sweep(spec, cluster, pg_db)
    assert done.returncode == 0, done.stderr[-3000:]
    study = study_so_far(pg_db, "pg-flood")
    assert study is not None
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 16
    rows = pg_db.server.execute("SELECT count(*) FROM trial_intermediate_values", pg_db.storage_db)
    assert rows == [(3200,)]
    client = MlflowClient(pg_db.tracking)
    points = 0
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == list(range(200))
        history = client.get_metric_history(trial.user_attrs["mlflow_run_id"], "loss")
        by_step = {m.step: m.value for m in history}
        for step, value in trial.intermediate_values.items():
            assert by_step[step] == pytest.approx(value)
            points += 1
    assert points == 3200
    _, children = runs(pg_db, "pg-flood")
    assert len({r.data.tags["orch.node_id"] for r in children}) == 2  # both worker nodes
    assert all(r.info.status == "FINISHED" for r in children)
