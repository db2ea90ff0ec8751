"""Sweeps on real multi-node Ray clusters on this machine (`ray start` per node, fake GPUs):
placement, fractional GPUs, a node killed mid-trial, the driver killed, a cluster that grows."""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.helpers import client, load, runs, runs_so_far, study_so_far
from tests.raycluster import LocalCluster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ORCH = str(Path(sys.executable).with_name("orch"))


def spec_file(tmp_path: Path, name: str, body: str) -> Path:
    """A spec in its own project folder (shipped to the cluster as the working dir)."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'cluster-test'\n")
    (tmp_path / "cluster_jobs.py").write_text((REPO / "tests" / "jobs_for_tests.py").read_text())
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\njob: cluster_jobs:where\nobjective: {{metric: loss}}\n"
        "sampler: {type: random, seed: 0}\nspace: {x: {type: float, low: 0, high: 1}}\n" + body
    )
    return path


def orch_sweep(spec: Path, tmp_path: Path, cluster: LocalCluster, *extra: str, **popen):
    args = [
        ORCH,
        "sweep",
        str(spec),
        "--workspace",
        str(tmp_path / "ws"),
        "--address",
        cluster.address,
        "--json",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), **cluster.client_env}
    if popen:
        return subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def max_overlap(trials) -> int:
    events = []
    for t in trials:
        events += [(t.datetime_start.timestamp(), 1), (t.datetime_complete.timestamp(), -1)]
    level = best = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        level += delta
        best = max(best, level)
    return best


@pytest.fixture
def cluster():
    made = LocalCluster()
    yield made
    made.shutdown()


def test_fractional_gpus_accelerator_type_and_placement(tmp_path, cluster):
    cluster.add_node("head", cpus=1)
    cluster.add_node("gpu", cpus=4, gpus=1, resources={"accelerator_type:T4": 1})
    spec = spec_file(
        tmp_path,
        "fractional",
        "trials: 8\nresources: {cpus: 0.5, gpus: 0.25, accelerator_type: T4}\n"
        "fixed: {seconds: 3}\n",
    )
    done = orch_sweep(spec, tmp_path, cluster)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["counts"]["COMPLETE"] == 8
    study = load(tmp_path / "ws", "fractional")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert max_overlap(trials) == 4  # four trials share the one GPU; parallel came from it
    _, children = runs(tmp_path / "ws", "fractional")
    for run in children:
        assert run.data.tags["test_node"] == "gpu"  # only that node has GPUs and a T4
        assert run.data.tags["orch.gpu_ids"] == "0"
        assert run.data.metrics["visible_gpus"] == 1.0  # CUDA_VISIBLE_DEVICES as Ray set it
        assert run.data.metrics["device_is_cpu"] == 1.0  # no real CUDA here: trial.device is cpu
        ipaddress.ip_address(run.data.tags["orch.node_ip"])  # where it ran, as Ray saw it
        assert run.data.tags["orch.node_id"] == children[0].data.tags["orch.node_id"]
        assert run.data.tags["orch.attempt"] == "0"


def _running_node(tmp_path: Path, name: str) -> str | None:
    found = runs_so_far(tmp_path / "ws", name)
    if found is None:
        return None
    for run in found[1]:
        if run.info.status == "RUNNING" and "test_node" in run.data.tags:
            return run.data.tags["test_node"]
    return None


def test_node_killed_mid_trial_is_retried_on_another_node(tmp_path, cluster):
    cluster.add_node("head", cpus=0)
    nodes = {
        "a": cluster.add_node("a", cpus=2, resources={"trial_slot": 2}),
        "b": cluster.add_node("b", cpus=2, resources={"trial_slot": 2}),
    }
    spec = spec_file(
        tmp_path,
        "nodefail",
        "trials: 4\nparallel: 2\nresources: {cpus: 1, custom: {trial_slot: 1}}\n"
        "fixed: {seconds: 12}\n",
    )
    proc = orch_sweep(spec, tmp_path, cluster, popen=True)
    deadline = time.time() + 180
    victim = None
    while victim is None and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        victim = _running_node(tmp_path, "nodefail")
        time.sleep(0.5)
    assert victim, "no trial started"
    nodes[victim].kill()
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    assert out.startswith("{"), (out[:2000], err[-3000:])
    summary = json.loads(out)
    assert summary["counts"]["COMPLETE"] == 4  # the sweep still ends with its trials
    _, children = runs(tmp_path / "ws", "nodefail")
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
        assert int(retry[0].data.tags["orch.attempt"]) >= 1
    assert all(r.info.status in ("FINISHED", "FAILED") for r in children)


def test_driver_killed_then_resume_tops_up_without_repeating(tmp_path, cluster):
    cluster.add_node("head", cpus=4)
    spec = spec_file(tmp_path, "driverdies", "trials: 6\nparallel: 2\nfixed: {seconds: 4}\n")
    proc = orch_sweep(spec, tmp_path, cluster, popen=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        study = study_so_far(tmp_path / "ws", "driverdies")
        if (
            study is not None
            and len(study.get_trials(states=(TrialState.COMPLETE,))) >= 2
            and study.get_trials(states=(TrialState.RUNNING,))
        ):
            break
        time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: the cluster lives on
    proc.communicate(timeout=60)
    before = load(tmp_path / "ws", "driverdies")
    kept = {t.number: t.values for t in before.get_trials(states=(TrialState.COMPLETE,))}
    orphaned = {t.number: t.params for t in before.get_trials(states=(TrialState.RUNNING,))}
    assert kept and orphaned

    done = orch_sweep(spec, tmp_path, cluster, "--resume", "--set", "fixed.seconds=0.2")
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path / "ws", "driverdies")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6  # tops up to `trials`, not another 6
    for number, values in kept.items():
        assert study.trials[number].values == values  # completed trials and metrics kept
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
    parent, children = runs(tmp_path / "ws", "driverdies")
    assert parent.info.status == "FINISHED"
    assert all(r.info.status != "RUNNING" for r in children)
    by_run = {r.info.run_id: r for r in children}
    for t in complete:
        history = client(tmp_path / "ws").get_metric_history(t.user_attrs["mlflow_run_id"], "loss")
        assert history and by_run[t.user_attrs["mlflow_run_id"]].info.status == "FINISHED"


def test_trials_spread_to_a_node_that_joins_mid_sweep(tmp_path, cluster):
    cluster.add_node("head", cpus=1)
    spec = spec_file(tmp_path, "grows", "trials: 10\nfixed: {seconds: 3}\n")
    proc = orch_sweep(spec, tmp_path, cluster, popen=True)
    deadline = time.time() + 180
    while _running_node(tmp_path, "grows") is None and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    cluster.add_node("late", cpus=3)
    _out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    study = load(tmp_path / "ws", "grows")
    assert max_overlap(study.get_trials(states=(TrialState.COMPLETE,))) >= 3
    _, children = runs(tmp_path / "ws", "grows")
    assert {r.data.tags["test_node"] for r in children} == {"head", "late"}


def test_cluster_lost_mid_sweep_exits_3_with_the_resume_command_then_resume_finishes(tmp_path):
    first = LocalCluster()
    try:
        first.add_node("head", cpus=2)
        spec = spec_file(tmp_path, "gone", "trials: 4\nparallel: 2\nfixed: {seconds: 120}\n")
        proc = orch_sweep(spec, tmp_path, first, popen=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            assert proc.poll() is None, proc.communicate()
            study = study_so_far(tmp_path / "ws", "gone")
            found = runs_so_far(tmp_path / "ws", "gone")  # the tracker may start after trials
            open_runs = [r for r in found[1] if r.info.status == "RUNNING"] if found else []
            if (
                study is not None
                and len(study.get_trials(states=(TrialState.RUNNING,))) == 2
                and len(open_runs) == 2
            ):
                break
            time.sleep(0.5)
        killed_at = time.time()
        for node in first.nodes:  # the whole cluster goes away; the driver lives on
            node.kill()
        out, err = proc.communicate(timeout=120)
    finally:
        first.shutdown()
    assert proc.returncode == 3, err[-3000:]
    assert time.time() - killed_at < 60  # noticed within 30 s, then closed the stores
    assert "Traceback" not in err, err[-3000:]
    assert f"error: lost the Ray cluster at {first.address} mid-sweep" in err, err[-3000:]
    resume = [line for line in err.splitlines() if line.startswith("continue with: ")]
    assert resume, err[-3000:]
    command = shlex.split(resume[0].removeprefix("continue with: "))
    assert command[:2] == ["orch", "sweep"] and command[-1] == "--resume"
    assert command[command.index("--address") + 1] == first.address  # the user's own arguments
    assert json.loads(out)["lost"]
    study = load(tmp_path / "ws", "gone")
    assert not study.get_trials(states=(TrialState.RUNNING,))
    lost = {t.number: t.params for t in study.get_trials(states=(TrialState.FAIL,))}
    assert len(lost) == 2
    parent, children = runs(tmp_path / "ws", "gone")
    assert parent.info.status != "RUNNING"
    assert children and all(r.info.status != "RUNNING" for r in children)

    again = LocalCluster(port=first.port)  # the cluster is back at the same address
    try:
        again.add_node("head", cpus=2)
        env = {**os.environ, "PYTHONPATH": str(REPO), **again.client_env}
        done = subprocess.run(
            [ORCH, *command[1:], "--set", "fixed.seconds=0.2"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        again.shutdown()
    assert done.returncode == 0, done.stderr[-3000:]
    complete = load(tmp_path / "ws", "gone").get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4  # none twice
    reruns = {
        t.user_attrs["orch.rerun_of"]: t.params for t in complete if "orch.rerun_of" in t.user_attrs
    }
    assert reruns == lost
