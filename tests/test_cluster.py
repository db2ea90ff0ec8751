"""Cluster secrets, configs, packaging and provenance of submitted code (no cluster started)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from orchestrator.cluster import (
    ClusterFolder,
    apply_mlflow_credentials,
    check_versions,
    ensure_secrets,
    launcher_config,
    load_cluster_config,
    package_project,
    prepare_submission,
    read_secret,
    resolve_token,
)
from orchestrator.cluster._postgres import HeadPostgres
from orchestrator.errors import ClusterError, InputError
from orchestrator.provenance import SUBMITTED_FILE, collect
from tests.conftest import REPO

CLUSTERS = REPO / "clusters"


@pytest.fixture(autouse=True)
def orch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ~/.orch, and none of the caller's Ray or MLflow credentials."""
    home = tmp_path / "orch-home"
    monkeypatch.setenv("ORCH_HOME", str(home))
    for name in (
        "RAY_AUTH_TOKEN",
        "RAY_AUTH_TOKEN_PATH",
        "ORCH_MLFLOW_CREDENTIALS",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        monkeypatch.setenv(name, "")  # recorded, so whatever the test sets is undone
        monkeypatch.delenv(name)
    return home


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_user_only_and_kept_across_ups() -> None:
    folder = ClusterFolder.of("c1")
    ensure_secrets(folder)
    assert _mode(folder.path) == 0o700 and _mode(folder.secrets) == 0o700
    files = sorted(folder.secrets.iterdir())
    assert [f.name for f in files] == ["mlflow_password", "mlflow_secret_key", "ray_token"]
    assert all(_mode(f) == 0o600 for f in files)
    token = read_secret(folder.token_file)
    assert len(token) == 64
    folder.token_file.chmod(0o644)
    ensure_secrets(folder)
    assert read_secret(folder.token_file) == token  # kept, and made user-only again
    assert _mode(folder.token_file) == 0o600


def test_token_comes_from_flag_env_or_the_cluster_at_that_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = ClusterFolder.of("c1")
    ensure_secrets(folder)
    folder.state_file.write_text(json.dumps({"address": "http://127.0.0.1:9999"}))
    cluster_token = read_secret(folder.token_file)
    assert resolve_token(token_file=None, address="http://127.0.0.1:9999/") == cluster_token
    assert resolve_token(token_file=None, address="http://elsewhere:8265") is None
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert resolve_token(token_file=None, address="http://127.0.0.1:9999") == "from-env"
    given = tmp_path / "token"
    given.write_text("from-file\n")
    assert resolve_token(token_file=given, address=None) == "from-file"


def test_mlflow_credentials_come_from_the_secrets_folder_named_by_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = ClusterFolder.of("c1")
    ensure_secrets(folder)
    apply_mlflow_credentials("http://127.0.0.1:5000")
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ
    monkeypatch.setenv("ORCH_MLFLOW_CREDENTIALS", str(folder.secrets))
    apply_mlflow_credentials("sqlite:///x.db")  # not a server: untouched
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    apply_mlflow_credentials("http://127.0.0.1:5000")
    env = os.environ
    assert env["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert env["MLFLOW_TRACKING_PASSWORD"] == read_secret(folder.secrets / "mlflow_password")


@pytest.mark.parametrize(
    "name", ["aws.yaml", "gcp.yaml", "onprem.yaml", "local.yaml", "local-postgres.yaml"]
)
def test_example_configs_are_valid_ray_cluster_configs(name: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    from orchestrator.cluster._launch import _local_config

    config = load_cluster_config(CLUSTERS / name)
    if config.local:
        validate_config(_local_config(config, 6379))
        return
    folder = ClusterFolder.of(config.name)
    rendered = launcher_config(config, folder)
    assert rendered["file_mounts"]["~/.orch/cluster/secrets"] == str(folder.secrets)
    validate_config(prepare_config(rendered))
    commands = " ".join(rendered["head_start_ray_commands"] + rendered["worker_start_ray_commands"])
    assert commands.count("RAY_AUTH_MODE=token") == 2
    assert "orch cluster mlflow" in commands and "--dashboard-host=127.0.0.1" in commands


def test_kuberay_manifest_turns_on_token_auth_everywhere() -> None:
    manifest = yaml.safe_load((CLUSTERS / "kuberay.yaml").read_text())
    assert manifest["kind"] == "RayCluster"
    groups = [manifest["spec"]["headGroupSpec"], *manifest["spec"]["workerGroupSpecs"]]
    for group in groups:
        env = {e["name"]: e["value"] for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"] == "token"


def _refused_up(config: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``orch cluster up CONFIG`` and check it refused as bad input, having made nothing."""
    done = subprocess.run(
        [sys.executable, "-c", "from orchestrator.cli import main; main()", "cluster", "up",
         str(config)],
        cwd=REPO, env={**os.environ, "ORCH_HOME": str(home)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not home.exists()  # refused before anything was made
    return done


def test_bad_cluster_configs_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("cluster_name: x\n")
    with pytest.raises(InputError, match=r"provider\.type is required"):
        load_cluster_config(bad)
    bad.write_text("cluster_name: x\nprovider: {type: aws}\nmetadata: {orch: {mlflow_prot: 1}}\n")
    with pytest.raises(InputError, match=r"metadata\.orch: unknown \['mlflow_prot'\]"):
        load_cluster_config(bad)
    bad.write_text("cluster_name: x\nprovider: {type: fake_multinode}\n")
    with pytest.raises(InputError, match="needs available_node_types"):
        load_cluster_config(bad)
    for text in ("cluster_name: x\nprovider: {type: aws}\nmetadata: {orch: {bogus: 1}}\n", None):
        if text is None:
            bad.unlink()  # a missing file is bad input too
        else:
            bad.write_text(text)
        done = _refused_up(bad, tmp_path / "home")
        assert str(bad) in done.stderr


@pytest.mark.parametrize(
    ("orch", "message"),
    [
        ("{postgres: yes please}", r"metadata\.orch\.postgres: 'yes please' is not true or false"),
        ("{postgres: true, postgres_port: 70000}", r"postgres_port: 70000 is not a port number"),
        ("{postgres: true, postgres_port: '5432'}", r"postgres_port: '5432' is not a port"),
        ("{postgres_port: 5432}", r"postgres_port: set only with postgres: true"),
        (
            "{postgres: true, storage: 'sqlite:///x.db'}",
            r"postgres: .*drop storage \(or postgres\)",
        ),
    ],
)
def test_bad_postgres_settings_name_the_field_exit_2(
    orch: str, message: str, tmp_path: Path
) -> None:
    bad = tmp_path / "c.yaml"
    local = (CLUSTERS / "local.yaml").read_text().split("metadata:")[0]
    bad.write_text(f"{local}metadata: {{orch: {orch}}}\n")
    with pytest.raises(InputError, match=message):
        load_cluster_config(bad)
    _refused_up(bad, tmp_path / "home")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_postgres_as_root_needs_a_home_the_postgres_user_can_enter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest's temp folders are root-only (0700) above ORCH_HOME: refused, nothing made."""
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    folder = ClusterFolder.of("pg")
    ensure_secrets(folder)
    with pytest.raises(ClusterError, match=r"the postgres user .* cannot enter /.*set ORCH_HOME"):
        HeadPostgres.of(folder).start(5432)
    assert not (folder.path / "postgres").exists()
    assert stat.S_IMODE(folder.path.stat().st_mode) == 0o700  # left as it was


def test_postgres_is_refused_on_a_launcher_head(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("cluster_name: x\nprovider: {type: aws}\nmetadata: {orch: {postgres: true}}\n")
    with pytest.raises(InputError, match=r"postgres: orch starts PostgreSQL only on a local"):
        load_cluster_config(bad)


def test_version_mismatch_is_refused_with_the_override_named() -> None:
    here = {"orch": "0.1.0", "ray": "2.60.0", "python": "3.11.7"}
    check_versions(here, {**here, "python": "3.11.9"})  # patch releases are fine
    with pytest.raises(ClusterError, match=r"ray 2\.60\.0 here, 2\.59\.0 on the head.*--allow"):
        check_versions(here, {**here, "ray": "2.59.0"})
    with pytest.raises(ClusterError, match=r"Python 3\.11\.7 here, 3\.12\.1"):
        check_versions(here, {**here, "python": "3.12.1"})
    with pytest.raises(ClusterError, match="orch is not installed in the head's Python"):
        check_versions(here, {**here, "orch": None})


def test_package_honours_gitignore_and_carries_provenance(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "data").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "train.py").write_text("print('hi')\n")
    (project / "data" / "big.bin").write_bytes(b"0" * 1000)
    (project / ".gitignore").write_text("data/\n")
    (project / "q.yaml").write_text((REPO / "search_spaces" / "quadratic.yaml").read_text())
    archive = tmp_path / "p.zip"
    files, size = package_project(prepare_submission(project / "q.yaml"), archive)
    names = zipfile.ZipFile(archive).namelist()
    assert "train.py" in names and SUBMITTED_FILE in names
    assert not any(n.startswith("data") for n in names)
    assert files == len([n for n in names if not n.endswith("/")]) and size > 0

    # On the head the shipped provenance wins over the (absent) git state.
    shipped = collect(project)
    shipped.tags.update({"orch.git_commit": "abc123", "orch.git_dirty": "true"})
    shipped.files["code/git.diff"] = b"diff --git a/train.py"
    head_copy = tmp_path / "head"
    head_copy.mkdir()
    (head_copy / SUBMITTED_FILE).write_text(shipped.to_json())
    found = collect(head_copy)
    assert found.tags["orch.git_commit"] == "abc123"
    assert found.tags["orch.submitted_from"] == str(project)
    assert found.files["code/git.diff"] == b"diff --git a/train.py"
    assert "submitted/env/pip-freeze.txt" in found.files and "env/pip-freeze.txt" in found.files


def _setsid_sleep() -> subprocess.Popen:
    """A process in a session of its own, as the daemons of a local cluster are."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def test_down_signals_only_processes_that_are_still_the_clusters_own(tmp_path: Path) -> None:
    """A state file names sessions and a temp folder; after a reboot (or once the cluster's
    processes ended and their ids were reused) they may be anyone's: `down` checks the boot
    and each recorded process's start time before it signals, and deletes only a temp folder
    orch made."""
    from orchestrator.cluster import down
    from orchestrator.cluster._processes import boot_id, session_record

    stranger, ours = _setsid_sleep(), _setsid_sleep()
    elsewhere = tmp_path / "not-a-cluster-dir"
    elsewhere.mkdir()
    try:
        record = session_record(stranger.pid)
        stale = {**record, "members": [[pid, start + 1] for pid, start in record["members"]]}
        folder = ClusterFolder.of("c1")
        ensure_secrets(folder)
        state = {
            "name": "c1",
            "provider": "fake_multinode",
            "boot_id": boot_id(),
            "sessions": [stale],
            "temp_dir": str(elsewhere),
        }
        folder.state_file.write_text(json.dumps(state))
        said: list[str] = []
        down("c1", say=said.append)
        assert stranger.poll() is None  # same pid and session, another start time: not ours
        assert elsewhere.is_dir()  # not a folder orch made: left alone
        assert not folder.state_file.exists()
        assert any("no longer its own" in line for line in said)
        assert any(str(elsewhere) in line for line in said)

        # Another boot: nothing recorded is ours, even with matching start times.
        folder.state_file.write_text(json.dumps({**state, "sessions": [record], "boot_id": "x"}))
        down("c1")
        assert stranger.poll() is None

        # The same boot and start time: that process is the cluster's, and it is stopped.
        folder.state_file.write_text(json.dumps({**state, "sessions": [session_record(ours.pid)]}))
        down("c1")
        assert ours.wait(timeout=30) == -signal.SIGTERM
        assert stranger.poll() is None
    finally:
        for process in (stranger, ours):
            process.kill()
            process.wait()


def test_sweep_address_sends_a_token_only_to_its_own_cluster(tmp_path: Path) -> None:
    """`orch sweep --address` never sends ~/.ray/auth_token (a local Ray's): only
    RAY_AUTH_TOKEN(_PATH), or the token of the cluster orch cluster up started there."""
    home = tmp_path / "user"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("a" * 64)  # some local Ray's token
    folder = ClusterFolder(tmp_path / "orch-home" / "clusters" / "c1")
    ensure_secrets(folder)
    folder.state_file.write_text(json.dumps({"gcs_address": "127.0.0.1:6390"}))
    probe = (
        "import sys, ray\n"
        "from orchestrator.credentials import use_cluster_token\n"
        "from ray._raylet import AuthenticationTokenLoader, get_authentication_mode\n"
        "use_cluster_token(sys.argv[1])\n"
        "loader = AuthenticationTokenLoader.instance()\n"
        "print(get_authentication_mode(), loader.get_raw_token() if loader.has_token() else None)\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "ORCH_"))},
        "HOME": str(home),
        "ORCH_HOME": str(tmp_path / "orch-home"),
        "PYTHONPATH": str(REPO),
    }

    def token_sent(address: str, **extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, address],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[-1]

    cluster_token = read_secret(folder.token_file)
    assert token_sent("localhost:6390") == cluster_token
    for elsewhere in ("10.0.0.7:6379", "127.0.0.1:6391"):
        assert token_sent(elsewhere) == "None"
        assert token_sent(elsewhere, RAY_AUTH_MODE="token") == "None"
    assert token_sent("10.0.0.7:6379", RAY_AUTH_TOKEN="b" * 64) == "b" * 64
