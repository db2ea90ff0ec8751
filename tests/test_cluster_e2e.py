"""For real: `orch cluster up` on clusters/local.yaml, submissions from a second "laptop"
process, results read back on the laptop, `orch cluster down` leaving nothing running.

One cluster for the module (token-protected head, autoscaling fake_multinode worker nodes,
MLflow with basic auth); the last test takes it down.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cluster import ClusterFolder, cluster_processes, read_secret
from tests.conftest import REPO

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
SPEC = "search_spaces/quadratic.yaml"
_SCRUBBED = ("RAY_", "MLFLOW_", "ORCH_")


def orch(*args: str, home: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run the orch CLI of this checkout as a separate process, with a clean environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    clean.update(
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        ORCH_HOME=str(home),
        **env,
    )
    return subprocess.run(
        [*CLI, *args], cwd=REPO, env=clean, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`orch cluster up clusters/local.yaml` in a private ORCH_HOME; its state and secrets."""
    home = tmp_path_factory.mktemp("head-home")
    # Ray's memory monitor weighs the whole machine, which other test runs share: a busy
    # neighbour must not get this cluster's workers killed.
    up = orch("cluster", "up", "clusters/local.yaml", home=home, RAY_memory_monitor_refresh_ms="0")
    folder = ClusterFolder(home / "clusters" / "local")
    state = folder.state()
    try:
        assert up.returncode == 0, up.stderr
        assert state is not None
        yield {
            "home": home,
            "state": state,
            "token": read_secret(folder.token_file),
            "password": read_secret(folder.secrets / "mlflow_password"),
            "key": read_secret(folder.secrets / "mlflow_secret_key"),
            "laptop": tmp_path_factory.mktemp("laptop-home"),
        }
    finally:
        if folder.state() is not None:  # a test failed before taking it down
            orch("cluster", "down", "clusters/local.yaml", home=home)


def _jobs(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    listed = orch("jobs", "--all", "--json", home=cluster["home"])
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["jobs"]


def test_submissions_without_or_with_a_wrong_token_are_refused(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    address = cluster["state"]["address"]
    before = _jobs(cluster)
    wrong = tmp_path / "wrong-token"
    wrong.write_text("0" * 64)
    refused = orch(
        "submit", SPEC, "--address", address, "--token-file", str(wrong), home=cluster["laptop"]
    )
    assert refused.returncode == 1
    assert "refused the Ray token (403 Forbidden): wrong token" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.splitlines()) == 1
    # No token at all, even with RAY_AUTH_MODE=token (Ray would otherwise send ~/.ray/auth_token).
    for env in ({}, {"RAY_AUTH_MODE": "token"}):
        refused = orch("submit", SPEC, "--address", address, home=cluster["laptop"], **env)
        assert refused.returncode == 1
        assert "requires a Ray token (401 Unauthorized)" in refused.stderr
        assert "Traceback" not in refused.stderr
    # An upload over the size limit is refused before anything is sent.
    project = tmp_path / "project"
    (project / "search_spaces").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "search_spaces" / "q.yaml").write_text((REPO / SPEC).read_text())
    (project / "weights.bin").write_bytes(os.urandom(300_000))
    too_big = orch(
        "submit",
        str(project / "search_spaces" / "q.yaml"),
        "--address",
        address,
        home=cluster["home"],
        RAY_max_grpc_message_size="200000",
    )
    assert too_big.returncode == 1
    assert "over Ray's upload limit" in too_big.stderr and "Traceback" not in too_big.stderr
    assert _jobs(cluster) == before  # nothing started, nothing uploaded as a job


def test_submit_follow_then_results_on_the_laptop(cluster: dict[str, Any]) -> None:
    address, token = cluster["state"]["address"], cluster["token"]
    laptop = {"home": cluster["laptop"], "RAY_AUTH_TOKEN": token}  # the token via environment
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    done = orch("submit", SPEC, "--address", address, "--set", "trials=4", "--follow", **laptop)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job_id = done.stdout.splitlines()[0]
    assert job_id.startswith("orch-quadratic-")
    assert "uploading" in done.stderr and "quadratic: complete" in done.stdout

    status = orch("status", "--address", address, "--json", **laptop)
    assert status.returncode == 0, status.stderr
    (study,) = json.loads(status.stdout)["studies"]
    assert study["study"] == "quadratic"
    assert study["counts"]["COMPLETE"] + study["counts"]["PRUNED"] == 4
    # A --storage given on the laptop reaches the head in a stores file (not on a command line).
    storage = cluster["state"]["storage"]
    explicit = orch("status", "--address", address, "--json", "--storage", storage, **laptop)
    assert explicit.returncode == 0, explicit.stderr
    assert [s["study"] for s in json.loads(explicit.stdout)["studies"]] == ["quadratic"]
    best = orch("best", "quadratic", "--address", address, "--json", **laptop)
    assert best.returncode == 0, best.stderr
    best_trial = json.loads(best.stdout)["best_trials"][0]
    assert best_trial["values"]["loss"] == study["best_trials"][0]["values"]["loss"]

    jobs = _jobs(cluster)  # the probes and queries left no job behind
    assert [(j["job_id"], j["status"]) for j in jobs] == [(job_id, "SUCCEEDED")]
    logs = orch("logs", job_id, "--address", address, **laptop)
    assert logs.returncode == 0 and "quadratic: complete" in logs.stdout

    runs = _mlflow_runs(cluster)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r["tags"])
    children = [r for r in runs if r is not parent]
    assert len(children) == 4
    assert parent["run_id"] == study["parent_run_id"]
    assert best_trial["mlflow_run_id"] in {r["run_id"] for r in children}
    assert parent["tags"]["orch.git_commit"] == commit  # computed on the laptop, shipped
    assert parent["tags"]["orch.submitted_from"] == str(REPO)
    assert "submitted/env/pip-freeze.txt" in parent["artifacts"]
    assert "env/pip-freeze.txt" in parent["artifacts"]
    assert "report/index.html" in parent["artifacts"]  # through the server's proxied artifacts

    secrets = [cluster["token"], cluster["password"], cluster["key"]]
    for run in runs:
        for where in (run["params"], run["tags"], run["artifacts"]):
            for name, value in where.items():
                assert not any(s in value for s in secrets), (run["run_id"], name)
    for output in (done, status, best, logs):
        assert not any(s in output.stdout + output.stderr for s in secrets)
    # Nor in any log of the cluster: Ray's (runtime env agent, job drivers, ...) or MLflow's.
    logged = [
        *Path(cluster["state"]["temp_dir"]).rglob("*.log"),
        *Path(cluster["state"]["temp_dir"]).rglob("*.out"),
        *Path(cluster["state"]["temp_dir"]).rglob("*.err"),
    ]
    logged.append(Path(cluster["home"]) / "clusters" / "local" / "mlflow.log")
    assert len(logged) > 10
    for file in logged:
        text = file.read_text(errors="replace")
        assert not any(s in text for s in secrets), file


def _mlflow_runs(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of the quadratic experiment: params, tags and artifact contents as text."""
    uri = cluster["state"]["tracking_uri"]
    with pytest.raises(urllib.error.HTTPError, match="401"):  # basic auth is on
        urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1")
    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = cluster["password"]
    try:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("quadratic")
        found = []
        for run in client.search_runs([experiment.experiment_id], max_results=100):
            folder = Path(tempfile.mkdtemp())
            client.download_artifacts(run.info.run_id, "", str(folder))
            artifacts = {
                str(p.relative_to(folder)): p.read_text(errors="replace")
                for p in folder.rglob("*")
                if p.is_file()
            }
            found.append(
                {
                    "run_id": run.info.run_id,
                    "params": dict(run.data.params),
                    "tags": dict(run.data.tags),
                    "artifacts": artifacts,
                }
            )
        return found
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]


def test_local_cluster_files_and_ports_are_private(cluster: dict[str, Any]) -> None:
    """After a sweep (worker nodes up): Ray's files in a user-only folder, and every port of
    every process of the cluster (GCS, raylets, agents, metrics, dashboard, MLflow) on
    127.0.0.1 only."""
    temp_dir = Path(cluster["state"]["temp_dir"])
    assert stat.S_IMODE(temp_dir.stat().st_mode) == 0o700
    assert temp_dir.stat().st_uid == os.getuid()
    assert any(temp_dir.rglob("sockets"))  # Ray's sockets and logs are in there
    pids = set(cluster_processes(cluster["state"]))
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True)
    ports = []
    for line in listening.stdout.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            ports.append(line.split()[3])
    assert len(ports) >= 8, ports  # GCS, raylets, agents, dashboard, MLflow, ...
    loopback = re.compile(r"^(127\.0\.0\.1|\[::1\]|\[::ffff:127\.0\.0\.1\]):\d+$")
    assert [p for p in ports if not loopback.match(p)] == []


def test_cluster_down_leaves_nothing_running(cluster: dict[str, Any]) -> None:
    state = cluster["state"]
    assert cluster_processes(state)  # the head, its worker nodes, MLflow
    listed = orch("cluster", "status", "--json", home=cluster["home"])
    assert [c["up"] for c in json.loads(listed.stdout)["clusters"]] == [True]
    down = orch("cluster", "down", "clusters/local.yaml", home=cluster["home"])
    assert down.returncode == 0, down.stderr
    assert cluster_processes(state) == []
    marks = (state["temp_dir"], state["gcs_address"].split(":")[1], state["tracking_uri"])
    assert _processes_mentioning(marks) == []
    assert not Path(state["temp_dir"]).exists()
    listed = orch("cluster", "status", "--json", home=cluster["home"])
    assert json.loads(listed.stdout)["clusters"] == []


def _processes_mentioning(marks: tuple[str, ...]) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        mlflow_port = marks[2].rsplit(":", 1)[1]
        if state != "Z" and (
            marks[0] in command or f":{marks[1]}" in command or f"--port={mlflow_port}" in command
        ):
            found.append(f"{entry}: {command[:120]}")
    return found
