"""Secrets of the clusters orch starts: where they live, how they are made, read and sent.

Each cluster has a folder ``~/.orch/clusters/<name>/`` (``$ORCH_HOME`` moves ``~/.orch``) that
only its user can open. Its ``secrets/`` folder holds the Ray auth token, the MLflow admin
password and the MLflow server's session key, one 0600 file each. Secret values are never
printed, logged or passed on command lines: processes get the path of the folder instead.

A leaf module (standard library only): the driver, the tracker and the CLI all use it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import ClusterError, InputError

__all__ = [
    "CREDENTIALS_ENV",
    "MLFLOW_USER",
    "ClusterFolder",
    "apply_mlflow_credentials",
    "bearer_headers",
    "check_cluster_name",
    "ensure_secrets",
    "known_clusters",
    "orch_home",
    "read_secret",
    "resolve_token",
    "secure_ray_token_file",
    "use_cluster_token",
    "write_secret",
]

HOME_ENV = "ORCH_HOME"
#: Names the secrets folder whose MLflow password a process should use (a path, never a value).
CREDENTIALS_ENV = "ORCH_MLFLOW_CREDENTIALS"
MLFLOW_USER = "admin"
TOKEN_FILE = "ray_token"
MLFLOW_PASSWORD_FILE = "mlflow_password"
MLFLOW_KEY_FILE = "mlflow_secret_key"
#: A cluster's name: it names a folder under ``~/.orch/clusters``, so never a path.
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_cluster_name(name: str, *, where: str = "cluster name") -> str:
    """``name`` if it is a cluster's name: 1-64 letters, digits, ``-`` or ``_``, not a path.

    Raises:
        InputError: it is anything else (``../x``, ``a/b``, ``.``, empty, too long).
    """
    if not _CLUSTER_NAME.match(name):
        shown = repr(name) if len(name) <= 70 else repr(name[:67] + "...")
        raise InputError(
            f"{where} {shown}: a cluster name is 1-64 letters, digits, - or _ "
            "(the name in the cluster config, not a path)"
        )
    return name


def orch_home() -> Path:
    """``$ORCH_HOME`` or ``~/.orch``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".orch").expanduser()


@dataclass(frozen=True)
class ClusterFolder:
    """The per-cluster folder: secrets, state, rendered config, head-side data of a local head."""

    path: Path

    @classmethod
    def of(cls, name: str) -> ClusterFolder:
        """The folder of cluster ``name``.

        Raises:
            InputError: ``name`` is not a cluster name (a path, ...).
        """
        return cls(orch_home() / "clusters" / check_cluster_name(name))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def secrets(self) -> Path:
        return self.path / "secrets"

    @property
    def token_file(self) -> Path:
        return self.secrets / TOKEN_FILE

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def create(self) -> None:
        """Make the folder and its secrets folder, user-only (0700)."""
        for folder in (self.path.parent, self.path, self.secrets):
            folder.mkdir(parents=True, exist_ok=True)
        for folder in (self.path, self.secrets):
            folder.chmod(0o700)

    def state(self) -> dict[str, Any] | None:
        """What ``orch cluster up`` recorded (None when the cluster is not up)."""
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state


def known_clusters() -> list[ClusterFolder]:
    """Every cluster folder under ``orch_home()``, by name."""
    root = orch_home() / "clusters"
    if not root.is_dir():
        return []
    return [
        ClusterFolder(p)
        for p in sorted(root.iterdir())
        if p.is_dir() and not p.is_symlink() and _CLUSTER_NAME.match(p.name)
    ]


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` readable and writable by its owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_secret(path: Path) -> str:
    """Read a secret file, first making it user-only if others could read it.

    Raises:
        ClusterError: the file cannot be read or is empty.
    """
    try:
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            path.chmod(0o600)
        value = path.read_text().strip()
    except OSError as exc:
        raise ClusterError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
    if not value:
        raise ClusterError(f"secret file {path} is empty")
    return value


def ensure_secrets(folder: ClusterFolder) -> None:
    """Generate the Ray token, MLflow password and key once; later calls keep them."""
    folder.create()
    makers: dict[str, Callable[[], str]] = {
        TOKEN_FILE: lambda: secrets.token_hex(32),
        MLFLOW_PASSWORD_FILE: lambda: secrets.token_urlsafe(24),
        MLFLOW_KEY_FILE: lambda: secrets.token_hex(32),
    }
    for name, make in makers.items():
        path = folder.secrets / name
        if not path.exists():
            write_secret(path, make())
        else:
            read_secret(path)  # fixes a loose mode


def secure_ray_token_file() -> None:
    """Ray writes ``~/.ray/auth_token`` world-readable: make it user-only."""
    path = Path.home() / ".ray" / "auth_token"
    if path.exists() and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(0o600)


def resolve_token(*, token_file: Path | None, address: str | None) -> str | None:
    """The Ray token to send: ``--token-file``, ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``,
    then the token of the cluster ``orch cluster up`` started at ``address``.

    ``~/.ray/auth_token`` is never sent: it belongs to whichever local Ray wrote it.
    """
    if token_file is not None:
        return read_secret(token_file.expanduser())
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return read_secret(Path(os.environ["RAY_AUTH_TOKEN_PATH"]).expanduser())
    for folder in known_clusters():
        state = folder.state() or {}
        if address and _same_url(state.get("address"), address) and folder.token_file.exists():
            return read_secret(folder.token_file)
    return None


def use_cluster_token(address: str) -> None:
    """Let this process's Ray send a token to the cluster at ``address`` (``ray.init``) only
    if it is that cluster's: ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, else the token of the
    cluster ``orch cluster up`` started at that GCS address. Otherwise token auth is turned off
    for the connection, so ``~/.ray/auth_token`` (a local Ray's) is never sent.

    Call before ``ray.init``; sets ``RAY_AUTH_MODE`` (and ``RAY_AUTH_TOKEN_PATH``, a path) in
    this process's environment.
    """
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        folder = next(
            (
                f
                for f in known_clusters()
                if _same_host_port((f.state() or {}).get("gcs_address"), address)
            ),
            None,
        )
        if folder is not None and folder.token_file.exists():
            os.environ["RAY_AUTH_TOKEN_PATH"] = str(folder.token_file)
    token_given = bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"))
    os.environ["RAY_AUTH_MODE"] = "token" if token_given else "disabled"
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")  # Ray caches its config (and the auth mode) when imported
    AuthenticationTokenLoader.instance().reset_cache()


def _same_host_port(recorded: Any, address: str) -> bool:
    """Whether ``address`` (``HOST:PORT``, maybe ``ray://``) is the GCS address ``recorded``."""
    if not isinstance(recorded, str):
        return False

    def normal(value: str) -> str:
        host, _, port = value.split("://", 1)[-1].rstrip("/").rpartition(":")
        return f"{'127.0.0.1' if host in ('localhost', '') else host}:{port}"

    return normal(recorded) == normal(address)


def bearer_headers(token: str | None) -> dict[str, str]:
    """The HTTP header carrying ``token`` (none without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def apply_mlflow_credentials(tracking_uri: str) -> None:
    """Let MLflow clients in this process log in to an orch cluster's tracking server.

    Nothing changes when ``MLFLOW_TRACKING_USERNAME`` is already set or the URI is not HTTP.
    The password comes from the secrets folder named by ``$ORCH_MLFLOW_CREDENTIALS`` (set on
    the nodes of clusters orch starts), else from the cluster folder whose server is
    ``tracking_uri``.
    """
    if os.environ.get("MLFLOW_TRACKING_USERNAME") or not tracking_uri.startswith("http"):
        return
    candidates = []
    if os.environ.get(CREDENTIALS_ENV):
        candidates.append(Path(os.environ[CREDENTIALS_ENV]).expanduser())
    for folder in known_clusters():
        state = folder.state() or {}
        if _same_url(state.get("tracking_uri"), tracking_uri):
            candidates.append(folder.secrets)
    for secrets_dir in candidates:
        password_file = secrets_dir / MLFLOW_PASSWORD_FILE
        if password_file.exists():
            os.environ["MLFLOW_TRACKING_USERNAME"] = MLFLOW_USER
            os.environ["MLFLOW_TRACKING_PASSWORD"] = read_secret(password_file)
            return


def _same_url(left: Any, right: str) -> bool:
    return isinstance(left, str) and left.rstrip("/") == right.rstrip("/")
