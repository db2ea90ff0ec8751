"""For real: `orch cluster up clusters/local-postgres.yaml` (PostgreSQL on the head), a sweep
submitted to it, the study and runs read back from PostgreSQL with the generated password,
artifacts fetched through the MLflow server, `down` stopping PostgreSQL and keeping its data,
and a second `up` seeing the old study.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg
import pytest

from orchestrator.cluster import ClusterFolder, read_secret
from orchestrator.cluster._postgres import HeadPostgres, find_bin_dir
from tests.test_cluster_e2e import orch

pytestmark = pytest.mark.slow

CONFIG = "clusters/local-postgres.yaml"
SPEC = "search_spaces/quadratic.yaml"


@pytest.fixture
def home() -> Iterator[Path]:
    """A private ORCH_HOME the ``postgres`` user can enter (as root, PostgreSQL runs as it;
    pytest's own temp folders are root-only all the way up)."""
    path = Path(tempfile.mkdtemp(prefix="orch-pghome-"))
    folder = ClusterFolder(path / "clusters" / "local-pg")
    try:
        yield path
    finally:
        if folder.state() is not None:  # a test failed before taking it down
            orch("cluster", "down", CONFIG, home=path)
        with contextlib.suppress(Exception):
            HeadPostgres(folder, find_bin_dir()).stop()
        shutil.rmtree(path, ignore_errors=True)


def _pids() -> dict[int, tuple[int, str]]:
    """Every live process: its parent and command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        if fields[0] != "Z":
            found[int(entry)] = (int(fields[1]), command)
    return found


def _studies(address: str, home: Path) -> dict[str, dict]:
    status = orch("status", "--address", address, "--json", home=home)
    assert status.returncode == 0, status.stderr
    return {s["study"]: s for s in json.loads(status.stdout)["studies"]}


def test_cluster_with_postgres_keeps_the_study_across_down_and_up(home: Path) -> None:
    up = orch("cluster", "up", CONFIG, home=home, RAY_memory_monitor_refresh_ms="0")
    assert up.returncode == 0, up.stderr
    folder = ClusterFolder(home / "clusters" / "local-pg")
    state = folder.state()
    assert state is not None
    pg = HeadPostgres(folder, find_bin_dir())
    password = read_secret(pg.password_file)
    port = state["postgres"]["port"]

    # Secrets user-only, data owned by whoever runs the server, no password in the state.
    for secret in (pg.password_file, pg.passfile):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.secrets.stat().st_mode) == 0o700
    assert stat.S_IMODE(pg.root.stat().st_mode) == 0o700
    server_user = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert pg.data.stat().st_uid == server_user
    assert state["storage"] == f"postgresql://orch@127.0.0.1:{port}/optuna"
    assert password not in folder.state_file.read_text()
    # Listening on 127.0.0.1 only, and only with the password.
    postmaster = pg.postmaster_pid()
    assert postmaster is not None
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True)
    ports = [
        line.split()[3] for line in listening.stdout.splitlines() if f"pid={postmaster}," in line
    ]
    assert ports == [f"127.0.0.1:{port}"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=port, user="orch", password="wrong", dbname="optuna")

    # A sweep submitted from the "laptop".
    address = state["address"]
    done = orch("submit", SPEC, "--address", address, "--set", "trials=3", "--follow", home=home)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _studies(address, home)["quadratic"]["counts"]["COMPLETE"] >= 1

    # `orch cluster env` names the study's URL and the password file, not the password: with
    # them, orch on this machine reads the study straight from PostgreSQL.
    exports = orch("cluster", "env", "local-pg", home=home)
    assert exports.returncode == 0, exports.stderr
    env = dict(re.findall(r"^export (ORCH_STORAGE|PGPASSFILE)=(\S+)$", exports.stdout, re.M))
    assert env == {"ORCH_STORAGE": state["storage"], "PGPASSFILE": str(pg.passfile)}
    assert password not in exports.stdout
    direct = orch("status", "--json", home=home, **env)
    assert direct.returncode == 0, direct.stderr
    assert [s["study"] for s in json.loads(direct.stdout)["studies"]] == ["quadratic"]

    # The study and the runs are in PostgreSQL.
    url = f"postgresql://orch:{password}@127.0.0.1:{port}/optuna"
    study = optuna.load_study(study_name="quadratic", storage=url)
    assert len(study.trials) == 3
    with psycopg.connect(
        host="127.0.0.1", port=port, user="orch", password=password, dbname="mlflow"
    ) as conn:
        runs = conn.execute("SELECT run_uuid, artifact_uri FROM runs").fetchall()
    assert len(runs) == 4  # the parent and its 3 trials
    assert all(uri.startswith("mlflow-artifacts:") for _, uri in runs)  # served by MLflow

    # Artifacts come through the tracking server (basic auth), not from its disk.
    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = read_secret(folder.secrets / "mlflow_password")
    try:
        from mlflow import MlflowClient

        client = MlflowClient(state["tracking_uri"])
        experiment = client.get_experiment_by_name("quadratic")
        parent = next(
            r
            for r in client.search_runs([experiment.experiment_id])
            if "mlflow.parentRunId" not in r.data.tags
        )
        fetched = Path(client.download_artifacts(parent.info.run_id, "env", tempfile.mkdtemp()))
        assert "ray==" in (fetched / "pip-freeze.txt").read_text()
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]

    # The password is on no command line and in no log or output.
    assert [pid for pid, (_, cmd) in _pids().items() if password in cmd] == []
    logs = [pg.log, folder.path / "mlflow.log", folder.path / "ray-start.log"]
    logs += [p for p in Path(state["temp_dir"]).rglob("*") if p.suffix in (".log", ".out", ".err")]
    for file in logs:
        assert password not in file.read_text(errors="replace"), file
    assert password not in done.stdout + done.stderr + up.stdout + up.stderr

    # `down` stops PostgreSQL and keeps its data.
    down = orch("cluster", "down", CONFIG, home=home)
    assert down.returncode == 0, down.stderr
    table = _pids()
    assert postmaster not in table
    assert [pid for pid, (ppid, _) in table.items() if ppid == postmaster] == []
    assert [pid for pid, (_, cmd) in table.items() if str(pg.data) in cmd] == []
    assert (pg.data / "PG_VERSION").exists() and not (pg.data / "postmaster.pid").exists()

    # `up` again: same data, same password, the old study is there.
    again = orch("cluster", "up", CONFIG, home=home, RAY_memory_monitor_refresh_ms="0")
    assert again.returncode == 0, again.stderr
    state = folder.state()
    assert state is not None
    assert read_secret(pg.password_file) == password
    counts = _studies(state["address"], home)["quadratic"]["counts"]
    assert counts["COMPLETE"] + counts.get("PRUNED", 0) == 3
    postmaster = pg.postmaster_pid()
    down = orch("cluster", "down", CONFIG, home=home)
    assert down.returncode == 0, down.stderr
    assert postmaster is not None and postmaster not in _pids()
    assert re.search(r"stopping PostgreSQL", down.stderr)
