"""``orch cluster up/down/status``: a thin layer over Ray's cluster launcher.

A cluster YAML is the file ``ray up`` takes; orch reads its own settings from
``metadata: {orch: {...}}``, which Ray leaves alone. Two routes:

- ``provider: {type: fake_multinode}`` (the local route, what the tests run): orch starts the head
  here itself (``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config ...`` under its own
  session) and Ray's autoscaler starts real worker nodes on this machine as trials need them.
- Any other provider (aws, gcp, local list of hosts, ...): Ray's launcher
  (``ray.autoscaler.sdk.create_or_update_cluster``) runs the config's own commands, which start
  Ray with token auth and the MLflow server (see ``clusters/``); orch adds the secrets folder
  to ``file_mounts``.

With ``metadata.orch.postgres: true`` (local route only) the head also runs a PostgreSQL server
holding the Optuna study and MLflow's runs (see :mod:`orchestrator.cluster._postgres`).

Either way ``up`` first generates the Ray token and the MLflow admin password (user-only files
in ``~/.orch/clusters/<name>/secrets``) and the head runs Ray with ``RAY_AUTH_MODE=token``, an
MLflow tracking server behind basic auth with proxied artifacts, and the Optuna storage.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator._net import LOCALHOST, free_port, http_ok, reachable_host
from orchestrator.cluster._postgres import DATABASES, HeadPostgres
from orchestrator.cluster._processes import (
    boot_id,
    cluster_processes,
    session_record,
    stop_processes,
)
from orchestrator.credentials import (
    CREDENTIALS_ENV,
    MLFLOW_KEY_FILE,
    MLFLOW_PASSWORD_FILE,
    MLFLOW_USER,
    ClusterFolder,
    bearer_headers,
    check_cluster_name,
    ensure_secrets,
    known_clusters,
    read_secret,
    secure_ray_token_file,
    write_secret,
)
from orchestrator.errors import ClusterError, InputError, one_line

__all__ = [
    "LOCAL_PROVIDER",
    "ClusterConfig",
    "OrchSettings",
    "down",
    "launcher_config",
    "load_cluster_config",
    "node_env",
    "start_mlflow",
    "status",
    "up",
]

LOCAL_PROVIDER = "fake_multinode"
#: Where the launcher route mounts the secrets folder on every node.
REMOTE_SECRETS = "~/.orch/cluster/secrets"
_START_TIMEOUT_S = 120.0
#: Keys the autoscaler reads that ``ray up`` would fill in from a provider's defaults.
_AUTOSCALER_DEFAULTS: dict[str, Any] = {
    "max_workers": 2,
    "upscaling_speed": 1.0,
    "idle_timeout_minutes": 5,
    "auth": {},
    "file_mounts": {},
    "cluster_synced_files": [],
    "file_mounts_sync_continuously": False,
    "rsync_exclude": [],
    "rsync_filter": [],
    "initialization_commands": [],
    "setup_commands": [],
    "head_setup_commands": [],
    "worker_setup_commands": [],
    "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
}

Say = Callable[[str], None]


@dataclass(frozen=True)
class OrchSettings:
    """``metadata.orch`` of a cluster YAML: where the head's services listen and keep data."""

    dashboard_host: str = "127.0.0.1"
    dashboard_port: int | None = None  # local route: a free port; launcher route: 8265
    mlflow_host: str = "127.0.0.1"
    mlflow_port: int | None = None  # local route: a free port; launcher route: 5000
    backend_store_uri: str | None = None  # default: sqlite next to the secrets on the head
    storage: str | None = None  # Optuna storage; default: sqlite on the head
    postgres: bool = False  # local route: PostgreSQL on the head holds the study and MLflow's runs
    postgres_port: int | None = None  # default: a free port


@dataclass(frozen=True)
class ClusterConfig:
    """A cluster YAML as Ray reads it, plus orch's settings from its metadata."""

    path: Path
    data: dict[str, Any]
    settings: OrchSettings

    @property
    def name(self) -> str:
        return str(self.data["cluster_name"])

    @property
    def provider(self) -> str:
        return str(self.data["provider"]["type"])

    @property
    def local(self) -> bool:
        return self.provider == LOCAL_PROVIDER


def load_cluster_config(path: str | Path) -> ClusterConfig:
    """Read a cluster YAML (the file ``ray up`` takes, orch's settings in ``metadata.orch``).

    Raises:
        InputError: naming the file and the missing or bad field (the file is bad input).
    """
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise InputError(f"{file}: cannot read cluster config: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: a cluster config is a YAML mapping (the file `ray up` takes)")
    name = data.get("cluster_name")
    check_cluster_name(name if isinstance(name, str) else "", where=f"{file}: cluster_name")
    provider = data.get("provider")
    if not isinstance(provider, dict) or not provider.get("type"):
        raise InputError(f"{file}: provider.type is required (fake_multinode, aws, gcp, ...)")
    raw = ((data.get("metadata") or {}).get("orch")) or {}
    known = set(OrchSettings.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"{file}: metadata.orch: unknown {unknown}; known: {sorted(known)}")
    settings = OrchSettings(**raw)
    _check_postgres(file, str(provider["type"]), settings)
    config = ClusterConfig(path=file.resolve(), data=data, settings=settings)
    if config.local and (
        "head_node_type" not in data
        or data["head_node_type"] not in data.get("available_node_types", {})
    ):
        raise InputError(
            f"{file}: the {LOCAL_PROVIDER} provider needs available_node_types with the "
            "head_node_type among them"
        )
    return config


def _check_postgres(file: Path, provider: str, settings: OrchSettings) -> None:
    """Check ``postgres`` and ``postgres_port`` of ``metadata.orch``.

    Raises:
        InputError: a bad value, a conflicting key, or a provider it cannot work with.
    """
    where = f"{file}: metadata.orch"
    if not isinstance(settings.postgres, bool):
        raise InputError(f"{where}.postgres: {settings.postgres!r} is not true or false")
    port = settings.postgres_port
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        raise InputError(f"{where}.postgres_port: {port!r} is not a port number (1-65535)")
    if not settings.postgres:
        if port is not None:
            raise InputError(f"{where}.postgres_port: set only with postgres: true")
        return
    if provider != LOCAL_PROVIDER:
        raise InputError(
            f"{where}.postgres: orch starts PostgreSQL only on a local ({LOCAL_PROVIDER}) head; "
            "on a remote head run it yourself and set storage and backend_store_uri "
            "(docs/cluster.md)"
        )
    clashing = [k for k in ("storage", "backend_store_uri") if getattr(settings, k)]
    if clashing:
        raise InputError(
            f"{where}.postgres: puts the study and MLflow's runs in the head's PostgreSQL; "
            f"drop {' and '.join(clashing)} (or postgres)"
        )


# up / down / status --------------------------------------------------------------------------


def up(config_path: str | Path, *, say: Say = lambda _: None) -> dict[str, Any]:
    """Start the cluster of ``config_path``; return the state recorded in its folder.

    Raises:
        ClusterError: the config is invalid, the cluster is up already, or a service did not
            start.
    """
    config = load_cluster_config(config_path)
    folder = ClusterFolder.of(config.name)
    previous = folder.state()
    if previous is not None and _alive(previous):
        raise ClusterError(
            f"cluster {config.name!r} is already up ({previous['address']}); "
            f"stop it first with: orch cluster down {config.path}"
        )
    ensure_secrets(folder)
    secure_ray_token_file()
    say(f"secrets: {folder.secrets} (user-only files)")
    state = _up_local(config, folder, say) if config.local else _up_launcher(config, folder, say)
    _write_state(folder, state)
    return state


def down(target: str | Path, *, say: Say = lambda _: None) -> dict[str, Any]:
    """Stop the cluster of a config file (or of a cluster name); return its last state.

    Raises:
        ClusterError: the cluster is not up, or its processes would not stop.
    """
    name = _cluster_name(target)
    folder = ClusterFolder.of(name)
    state = folder.state()
    if state is None:
        raise ClusterError(f"cluster {name!r} is not up (no {folder.state_file})")
    if state["provider"] == LOCAL_PROVIDER:
        stop_processes(state, say)
        _remove_temp_dir(state.get("temp_dir"), state["name"], say)
        if state.get("postgres"):
            say(f"stopping PostgreSQL (its data stays in {folder.path / 'postgres'})")
            HeadPostgres.of(folder).stop()
    else:
        from ray.autoscaler.sdk import teardown_cluster

        say(f"tearing down {name} with Ray's cluster launcher")
        teardown_cluster(state["config"])
    folder.state_file.unlink(missing_ok=True)
    return state


def status() -> list[dict[str, Any]]:
    """Every cluster with a state folder, with ``up`` true when it still answers."""
    found = []
    for folder in known_clusters():
        state = folder.state()
        if state is not None:
            found.append({**state, "up": _alive(state)})
    return found


def _cluster_name(target: str | Path) -> str:
    """The cluster of a config file (``*.yaml``, or any file), else ``target`` as a name.

    Raises:
        InputError: ``target`` is neither a config file nor a cluster name (a path, ...).
    """
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_cluster_config(path).name
    return check_cluster_name(str(target))


def _temp_dir(name: str) -> Path:
    """A new user-only folder for a local cluster's Ray files (logs, sockets, shipped code).

    Ray makes its own temp dir world-writable (0777): it goes inside this one, which only its
    user can enter. Short, for Ray's socket paths (at most 107 bytes).
    """
    folder = Path(tempfile.gettempdir()) / f"orch-{name[:16]}-{os.urandom(3).hex()}"
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)  # whatever the umask
    return folder


def _remove_temp_dir(recorded: Any, name: str, say: Say) -> None:
    """Remove a local cluster's temp folder, if the state names one orch made (a state file
    could name any folder): ``orch-NAME-HEX`` under the temp dir, this user's, not a link."""
    if not isinstance(recorded, str):
        return
    folder = Path(recorded)
    made_by_orch = (
        re.fullmatch(rf"orch-{re.escape(name[:16])}-[0-9a-f]{{6}}", folder.name) is not None
        and folder.parent == Path(tempfile.gettempdir())
        and folder.is_dir()
        and not folder.is_symlink()
        and folder.stat().st_uid == os.getuid()
    )
    if made_by_orch:
        shutil.rmtree(folder, ignore_errors=True)
    elif folder.exists():
        say(f"left {folder} alone: not a temp folder orch made for {name}")


def _alive(state: dict[str, Any]) -> bool:
    if state["provider"] == LOCAL_PROVIDER:
        return bool(cluster_processes(state))
    token_file = ClusterFolder.of(state["name"]).token_file
    token = read_secret(token_file) if token_file.exists() else None
    return http_ok(f"{state['address']}/api/version", headers=bearer_headers(token))


def _write_state(folder: ClusterFolder, state: dict[str, Any]) -> None:
    write_secret(folder.state_file, json.dumps(state, indent=2) + "\n")


# The local route -----------------------------------------------------------------------------


def _up_local(config: ClusterConfig, folder: ClusterFolder, say: Say) -> dict[str, Any]:
    settings = config.settings
    gcs_port, client_port, agent_port = free_port(), free_port(), free_port()
    dashboard_port = settings.dashboard_port or free_port()
    mlflow_port = settings.mlflow_port or free_port()
    temp_dir = _temp_dir(config.name)
    rendered = folder.path / "ray-cluster.yaml"
    write_secret(rendered, yaml.safe_dump(_local_config(config, gcs_port), sort_keys=False))
    storage = settings.storage or f"sqlite:///{folder.path / 'optuna.db'}"
    backend_store_uri = settings.backend_store_uri
    postgres = HeadPostgres.of(folder) if settings.postgres else None
    pg_port = (settings.postgres_port or free_port()) if postgres else 0
    db_env: dict[str, str] = {}
    if postgres is not None:
        storage = postgres.url(DATABASES["storage"], pg_port)
        backend_store_uri = postgres.url(DATABASES["tracking"], pg_port)
        db_env = postgres.client_env()
    tracking_uri = f"http://127.0.0.1:{mlflow_port}"
    state: dict[str, Any] = {
        "name": config.name,
        "provider": config.provider,
        "config": str(config.path),
        "address": f"http://{reachable_host(settings.dashboard_host)}:{dashboard_port}",
        "tracking_uri": f"http://{reachable_host(settings.mlflow_host)}:{mlflow_port}",
        "storage": storage,
        "gcs_address": f"{LOCALHOST}:{gcs_port}",
        "temp_dir": str(temp_dir),
        "boot_id": boot_id(),
        "sessions": [],
        "started_at": time.time(),
    }
    if postgres is not None:
        # No password here: clients read it from the secrets folder (PGPASSFILE).
        state["postgres"] = {"port": pg_port, "data_dir": str(postgres.data)}
    try:
        if postgres is not None:
            say(f"starting PostgreSQL on 127.0.0.1:{pg_port} (data: {postgres.data})")
            postgres.start(pg_port)
            _write_state(folder, state)  # so `down` stops it if what follows fails
        say(f"starting MLflow (basic auth) on {settings.mlflow_host}:{mlflow_port}")
        mlflow_session = start_mlflow(
            secrets_dir=folder.secrets,
            data_dir=folder.path,
            host=settings.mlflow_host,
            port=mlflow_port,
            backend_store_uri=backend_store_uri,
            wait=False,
            extra_env=db_env,
        )
        state["sessions"].append(session_record(mlflow_session))
        _write_state(folder, state)  # so `down` finds what is already running
        say(f"starting the Ray head (token auth) with dashboard on {state['address']}")
        head_env = {
            "RAY_FAKE_CLUSTER": "1",
            # Every node of a local cluster on 127.0.0.1: Ray then binds its agents, metrics
            # and client server there (`--node-ip-address=127.0.0.1` alone is replaced by
            # the machine's address).
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "ORCH_STORAGE": storage,
            "MLFLOW_TRACKING_URI": tracking_uri,
            **db_env,
        }
        head_session = _start_head(
            config,
            folder,
            env=node_env(folder.secrets, extra=head_env),
            args=[
                f"--port={gcs_port}",
                f"--dashboard-host={settings.dashboard_host}",
                f"--dashboard-port={dashboard_port}",
                f"--ray-client-server-port={client_port}",
                f"--dashboard-agent-listen-port={agent_port}",
                f"--temp-dir={temp_dir / 'ray'}",
                f"--autoscaling-config={rendered}",
            ],
        )
        state["sessions"].append(session_record(head_session))
        _write_state(folder, state)
        token = read_secret(folder.token_file)
        _wait_http(f"{state['address']}/api/version", bearer_headers(token), "the Ray dashboard")
        _wait_http(f"{state['tracking_uri']}/health", {}, "the MLflow server")
        # Now that both serve: every process of their sessions, for `down` to recognise.
        state["sessions"] = [session_record(s) for s in (mlflow_session, head_session)]
        _write_state(folder, state)
    except BaseException:
        stop_processes(state, say)
        if postgres is not None:
            with contextlib.suppress(ClusterError):
                postgres.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
        folder.state_file.unlink(missing_ok=True)
        raise
    return state


def _local_config(config: ClusterConfig, gcs_port: int) -> dict[str, Any]:
    data = copy.deepcopy(config.data)
    for key, value in _AUTOSCALER_DEFAULTS.items():
        data.setdefault(key, copy.deepcopy(value))
    data["provider"]["gcs_address"] = f"127.0.0.1:{gcs_port}"
    return data


def node_env(secrets_dir: Path, *, extra: dict[str, str]) -> dict[str, str]:
    """The environment a node of an orch cluster starts with: token auth, no secret values."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_AUTH_TOKEN", "RAY_ADDRESS", "MLFLOW_TRACKING_PASSWORD")
        and k != "MLFLOW_TRACKING_USERNAME"
    }
    env.update(
        {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(secrets_dir / "ray_token"),
            "RAY_USAGE_STATS_ENABLED": "0",
            CREDENTIALS_ENV: str(secrets_dir),
            # Job entrypoints run with the head's PATH: put this interpreter's scripts first.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            **extra,
        }
    )
    return env


def _start_head(
    config: ClusterConfig, folder: ClusterFolder, *, env: dict[str, str], args: list[str]
) -> int:
    """Run ``ray start --head`` in a new session; return the session id its daemons keep."""
    head = config.data["available_node_types"][config.data["head_node_type"]]
    resources = dict(head.get("resources") or {})
    if "CPU" in resources:
        args.append(f"--num-cpus={int(resources.pop('CPU'))}")
    if "GPU" in resources:
        args.append(f"--num-gpus={int(resources.pop('GPU'))}")
    if resources:
        args.append(f"--resources={json.dumps(resources)}")
    ray = Path(sys.executable).parent / "ray"
    command = [str(ray), "start", "--head", "--disable-usage-stats", *args]
    log = folder.path / "ray-start.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
    if code != 0:
        raise ClusterError(f"ray start --head failed ({_last_line(log)}); see {log}")
    return process.pid


def start_mlflow(
    *,
    secrets_dir: Path,
    data_dir: Path,
    host: str,
    port: int,
    backend_store_uri: str | None = None,
    wait: bool = True,
    extra_env: dict[str, str] | None = None,
) -> int:
    """Start ``mlflow server`` with basic auth and proxied artifacts in a new session.

    ``secrets_dir`` may be read-only (a Kubernetes secret); ``data_dir`` gets the users
    database, the artifacts, the log and a 0600 auth config holding the admin password. The
    session key goes into the server's environment; no secret appears on a command line.
    ``extra_env`` is added to the server's environment (``PGPASSFILE``, ...).
    Returns the server's session id.
    """
    secrets_dir, data_dir = secrets_dir.expanduser(), data_dir.expanduser()
    artifacts = data_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # users' password hashes live here too
        # Keeps a group's traverse-only access (0710: the postgres user's, to its data dir).
        data_dir.chmod(0o700 | (data_dir.stat().st_mode & 0o010))
    backend_store_uri = backend_store_uri or f"sqlite:///{data_dir / 'mlflow.db'}"
    auth_ini = data_dir / "mlflow-auth.ini"
    write_secret(
        auth_ini,
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{data_dir / 'mlflow-users.db'}\n"
        f"admin_username = {MLFLOW_USER}\n"
        f"admin_password = {read_secret(secrets_dir / MLFLOW_PASSWORD_FILE)}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(
        {
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": read_secret(secrets_dir / MLFLOW_KEY_FILE),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # By environment: a database password would show on the command line.
            "MLFLOW_BACKEND_STORE_URI": backend_store_uri,
            **(extra_env or {}),
        }
    )
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [str(mlflow)] if mlflow.exists() else [sys.executable, "-m", "mlflow"]
    command += [
        "server",
        "--app-name=basic-auth",
        f"--host={host}",
        f"--port={port}",
        "--serve-artifacts",
        f"--artifacts-destination={artifacts}",
        "--workers=1",
    ]
    with open(data_dir / "mlflow.log", "ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    if wait:
        _wait_http(f"http://{reachable_host(host)}:{port}/health", {}, "the MLflow server")
    return process.pid


# The launcher route --------------------------------------------------------------------------


def _up_launcher(config: ClusterConfig, folder: ClusterFolder, say: Say) -> dict[str, Any]:
    from ray.autoscaler.sdk import create_or_update_cluster, get_head_node_ip

    settings = config.settings
    rendered = folder.path / "ray-cluster.yaml"
    write_secret(rendered, yaml.safe_dump(launcher_config(config, folder), sort_keys=False))
    say(f"starting {config.name} with Ray's cluster launcher ({config.provider})")
    try:
        create_or_update_cluster(str(rendered), no_config_cache=True)
        head_ip = get_head_node_ip(str(rendered))
    except Exception as exc:
        raise ClusterError(f"ray up failed: {one_line(exc)}") from None
    dashboard_port = settings.dashboard_port or 8265
    mlflow_port = settings.mlflow_port or 5000
    auth = config.data.get("auth") or {}
    user = auth.get("ssh_user", "ubuntu")
    key = f"-i {auth['ssh_private_key']} " if auth.get("ssh_private_key") else ""
    return {
        "name": config.name,
        "provider": config.provider,
        "config": str(rendered),
        "head_ip": head_ip,
        # The head's services listen on 127.0.0.1: reach them through the tunnel below.
        "address": f"http://127.0.0.1:{dashboard_port}",
        "tracking_uri": f"http://127.0.0.1:{mlflow_port}",
        "tunnel": (
            f"ssh {key}-N -L {dashboard_port}:127.0.0.1:{dashboard_port} "
            f"-L {mlflow_port}:127.0.0.1:{mlflow_port} {user}@{head_ip}"
        ),
        "started_at": time.time(),
    }


def launcher_config(config: ClusterConfig, folder: ClusterFolder) -> dict[str, Any]:
    """The config handed to Ray's launcher: the user's, plus the secrets folder mounted."""
    data = copy.deepcopy(config.data)
    mounts = dict(data.get("file_mounts") or {})
    mounts[REMOTE_SECRETS] = str(folder.secrets)
    data["file_mounts"] = mounts
    return data


# Small helpers -------------------------------------------------------------------------------


def _wait_http(url: str, headers: dict[str, str], what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if http_ok(url, headers=headers):
            return
        time.sleep(0.5)
    raise ClusterError(f"{what} did not answer at {url} within {_START_TIMEOUT_S:.0f}s")


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1][-300:] if lines else "no output"
