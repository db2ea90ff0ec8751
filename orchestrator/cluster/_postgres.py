"""The PostgreSQL server a local cluster's head runs (``metadata.orch.postgres: true``).

Its data lives in the cluster folder (``postgres/data``) and outlives ``orch cluster down``;
its password is generated once into the user-only secrets folder (``postgres_password``) next
to a libpq password file (``pgpass``). Clients get URLs *without* the password plus
``PGPASSFILE`` naming that file, so the password is never on a command line, in a URL that is
logged or in ``state.json``. The server listens on 127.0.0.1 only (no Unix socket) and asks
for scram-sha-256 passwords.

``initdb`` and ``postgres`` refuse to run as root: when orch runs as root they run as the
``postgres`` user (``runuser``), which then owns ``postgres/`` (0700), and the folders above it
that orch owns get the ``postgres`` group with traverse-only access (0710).
"""

from __future__ import annotations

import contextlib
import glob
import grp
import os
import pwd
import secrets
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.credentials import ClusterFolder, orch_home, read_secret, write_secret
from orchestrator.errors import ClusterError

__all__ = [
    "BIN_GLOB",
    "DATABASES",
    "PASSFILE",
    "PASSWORD_FILE",
    "USER",
    "HeadPostgres",
    "find_bin_dir",
]

BIN_GLOB = "/usr/lib/postgresql/*/bin"
USER = "orch"
PASSWORD_FILE = "postgres_password"
PASSFILE = "pgpass"
#: The databases ``up`` creates: Optuna's and MLflow's (both keep an ``alembic_version``).
DATABASES = {"storage": "optuna", "tracking": "mlflow"}
_OS_USER = "postgres"
_TIMEOUT_S = 120


def find_bin_dir() -> Path:
    """The newest PostgreSQL server binaries on this machine (``/usr/lib/postgresql/*/bin``).

    Raises:
        ClusterError: none is installed.
    """
    found = sorted(
        (Path(d) for d in glob.glob(BIN_GLOB) if Path(d, "initdb").exists()),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    if not found:
        raise ClusterError(
            f"metadata.orch.postgres needs PostgreSQL's server binaries ({BIN_GLOB}/initdb): "
            "apt-get install postgresql"
        )
    return found[-1]


@dataclass(frozen=True)
class HeadPostgres:
    """The PostgreSQL server of one local cluster (data in ``<cluster folder>/postgres``)."""

    folder: ClusterFolder
    bin_dir: Path

    @classmethod
    def of(cls, folder: ClusterFolder) -> HeadPostgres:
        """The server of ``folder``'s cluster, with this machine's binaries."""
        return cls(folder, find_bin_dir())

    # Paths and URLs --------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.folder.path / "postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def password_file(self) -> Path:
        return self.folder.secrets / PASSWORD_FILE

    @property
    def passfile(self) -> Path:
        return self.folder.secrets / PASSFILE

    def url(self, database: str, port: int) -> str:
        """A SQLAlchemy URL without the password (libpq reads it from ``PGPASSFILE``)."""
        return f"postgresql://{USER}@127.0.0.1:{port}/{database}"

    def client_env(self) -> dict[str, str]:
        """What a client process needs besides the URL: the path of the password file."""
        return {"PGPASSFILE": str(self.passfile)}

    # Lifecycle -------------------------------------------------------------------------------

    def start(self, port: int) -> None:
        """Create the cluster on first use, start the server on 127.0.0.1:``port``, and create
        the Optuna and MLflow databases if missing. A server left running is restarted.

        Raises:
            ClusterError: initdb, the server or the database creation failed.
        """
        password = self._password()
        write_secret(self.passfile, f"127.0.0.1:*:*:{USER}:{password}\n")
        self._prepare_folders()
        if not (self.data / "PG_VERSION").exists():
            self._initdb(password)
        if self.running:
            self.stop()
        self._run(
            "pg_ctl", "-D", str(self.data), "start", "-w", "-t", str(_TIMEOUT_S),
            "-l", str(self.log), "-o", f"-p {port}",
        )  # fmt: skip
        self._create_databases(port, password)

    def stop(self) -> None:
        """Stop the server (fast: sessions are rolled back); the data stays.

        Raises:
            ClusterError: it would not stop.
        """
        if not (self.data / "postmaster.pid").exists():
            return
        result = self._run(
            "pg_ctl", "-D", str(self.data), "stop", "-w", "-t", "60", "-m", "fast", check=False
        )
        if result.returncode != 0 and self.running:
            self._run("pg_ctl", "-D", str(self.data), "stop", "-w", "-t", "60", "-m", "immediate")

    @property
    def running(self) -> bool:
        """Whether this cluster's postmaster runs."""
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (first line of ``postmaster.pid``), if any."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    # Helpers ---------------------------------------------------------------------------------

    def _password(self) -> str:
        if not self.password_file.exists():
            write_secret(self.password_file, secrets.token_urlsafe(24))
        return read_secret(self.password_file)

    @property
    def _as_postgres(self) -> bool:
        return os.geteuid() == 0

    def _prepare_folders(self) -> None:
        """``postgres/`` user-only for whoever runs the server; as root, the folders above it
        traversable by the ``postgres`` group only (orch's own) or already (the rest).

        Raises:
            ClusterError: as root, a folder above ORCH_HOME keeps the ``postgres`` user out.
        """
        if not self._as_postgres:
            self.root.mkdir(mode=0o700, exist_ok=True)
            self.root.chmod(0o700)
            return
        entry = pwd.getpwnam(_OS_USER)
        groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if _OS_USER in g.gr_mem}
        home = orch_home().resolve()
        for folder in [*reversed(self.folder.path.resolve().parents), self.folder.path.resolve()]:
            info = folder.stat()
            if _can_traverse(info, entry.pw_uid, groups):
                continue
            outside = folder != home and home not in folder.parents
            if outside or info.st_uid != os.geteuid():
                raise ClusterError(
                    f"metadata.orch.postgres: the {_OS_USER} user (PostgreSQL runs as it when "
                    f"orch runs as root) cannot enter {folder}: set ORCH_HOME to a folder it "
                    "can reach (e.g. under /var/lib/orch)"
                )
            os.chown(folder, -1, entry.pw_gid)
            folder.chmod(stat.S_IMODE(info.st_mode) & ~0o070 | 0o010)
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.root.chmod(0o700)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _initdb(self, password: str) -> None:
        pwfile = self.root / "initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        try:
            if self._as_postgres:
                entry = pwd.getpwnam(_OS_USER)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "-E", "UTF8", "--locale=C",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# orch cluster up: 127.0.0.1 only, no Unix socket, scram passwords\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "password_encryption = 'scram-sha-256'\n"
            )

    def _create_databases(self, port: int, password: str) -> None:
        import psycopg

        deadline = time.monotonic() + _TIMEOUT_S
        while True:
            try:
                conn = psycopg.connect(
                    host="127.0.0.1", port=port, user=USER, password=password,
                    dbname="postgres", connect_timeout=10, autocommit=True,
                )  # fmt: skip
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"PostgreSQL did not accept connections on 127.0.0.1:{port}; see {self.log}"
                    ) from None
                time.sleep(0.2)
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            present = {row[0] for row in cur.fetchall()}
            for name in DATABASES.values():
                if name not in present:
                    cur.execute(f'CREATE DATABASE "{name}"')

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", _OS_USER, "--"] if self._as_postgres else []
        # A bare environment: the server inherits it (no caller's tokens, no PG* settings).
        env = {k: os.environ[k] for k in ("PATH", "TZ") if k in os.environ}
        try:
            result = subprocess.run(
                [*prefix, str(self.bin_dir / tool), *args],
                capture_output=True,
                text=True,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                timeout=_TIMEOUT_S + 30,
            )
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{tool} {args[2:3]} timed out; see {self.log}") from None
        if check and result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()
            raise ClusterError(
                f"{tool} failed ({output[-1][-200:] if output else result.returncode}); "
                f"see {self.log}"
            )
        return result


def _can_traverse(info: os.stat_result, uid: int, groups: set[int]) -> bool:
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)
