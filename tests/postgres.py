"""A real PostgreSQL server for tests: a throwaway cluster on 127.0.0.1, password auth.

``pg_server`` (session) runs ``initdb`` and ``pg_ctl`` from Debian's server binaries
(``/usr/lib/postgresql/*/bin``, as the ``postgres`` user when we are root, since ``initdb``
refuses root) on a free port, with scram-sha-256 passwords and no Unix socket. ``pg_db``
(per test) creates two fresh databases, one for the Optuna study and one for MLflow: both use
an ``alembic_version`` table, so they cannot share one.

The password is generated per session and only travels inside URLs, the initdb password file
(0600, removed after initdb) and psycopg's connection arguments (never a command line);
``repr`` masks it. Missing binaries fail the tests (they are not skipped): ``.ci/run`` installs
Debian's ``postgresql``. A cluster whose test process was killed before its teardown is stopped
and removed by the next ``PostgresServer``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from orchestrator.cluster._postgres import find_bin_dir

__all__ = ["PgDatabases", "PostgresServer", "find_bin_dir", "pg_db", "pg_server"]

USER = "orch"
PREFIX = "orch-pg-"
OWNER_FILE = "owner.pid"  # the test process a cluster belongs to (orphans are removed)


def _remove_orphans(bin_dir: Path, as_postgres: list[str]) -> None:
    """Stop and remove clusters left by test processes that were killed before their teardown."""
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        if (root / "data" / "postmaster.pid").exists():
            subprocess.run(
                [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "stop", "-m",
                 "immediate", "-w"],
                capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temp folder: ``start``, ``stop``, ``close`` (removes it).

    ``fast`` turns off fsync and synchronous commit (tests need no durability against power
    cuts; a crash of the server process itself still loses nothing committed to the OS);
    ``settings`` adds or overrides server settings (``-c name=value``).
    """

    def __init__(
        self,
        *,
        fast: bool = True,
        max_connections: int = 200,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bin_dir = find_bin_dir()
        self.password = secrets.token_urlsafe(18)
        self.port = _free_port()
        self._options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",
            "max_connections": str(max_connections),
        }
        if fast:
            self._options.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        self._options.update(settings or {})
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        _remove_orphans(self.bin_dir, self._as)
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / OWNER_FILE).write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if self._as:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._initdb()

    def __repr__(self) -> str:
        return f"PostgresServer(127.0.0.1:{self.port}, user={USER}, password=***)"

    # URLs ------------------------------------------------------------------------------------

    def url(self, database: str, *, driver: str = "") -> str:
        """A SQLAlchemy URL (with the password) for ``database``; ``driver``: e.g. ``+psycopg``."""
        return f"postgresql{driver}://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        """A psycopg connection (autocommit) to ``database``."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=USER,
            password=self.password,
            dbname=database,
            connect_timeout=10,
            autocommit=True,
        )

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        """Run one statement; return its rows (empty for statements without any)."""
        with contextlib.closing(self.connect(database)) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a random name by default); return its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever still uses it."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # Server lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the postmaster of this cluster is running."""
        result = self._pg_ctl("status", check=False)
        return result.returncode == 0

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server and wait until it accepts connections."""
        # pg_ctl hands -o to the server through a shell: '' is an empty value.
        options = " ".join(f"-c {k}={v or chr(39) * 2}" for k, v in self._options.items())
        self._pg_ctl(
            "start", "-w", "-t", str(int(timeout_s)), "-l", str(self.log),
            "-o", f"-p {self.port} {options}",
        )  # fmt: skip
        self._wait_ready(timeout_s)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back sessions; ``immediate``: like a crash)."""
        self._pg_ctl("stop", "-w", "-t", "60", "-m", mode)

    def close(self) -> None:
        """Stop the server if it runs and remove its folder."""
        try:
            if self.data.exists() and self.running:
                try:
                    self.stop("fast")
                except subprocess.CalledProcessError:
                    self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log (for failure messages)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _initdb(self) -> None:
        pwfile = self.root / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password + "\n")
        if self._as:
            entry = pwd.getpwnam("postgres")
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        try:
            self._run(
                str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER,
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                "--locale=C", "--no-sync",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start:\n{self.log_tail()}") from None
                time.sleep(0.1)

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args, check=check)

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self._as, *command],
            capture_output=True,
            text=True,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{Path(command[0]).name} {command[1:3]} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{self.log_tail()}"
            )
        return result


@dataclass(frozen=True)
class PgDatabases:
    """Two fresh databases of one test: the Optuna study's and MLflow's (URLs with password)."""

    server: PostgresServer
    storage_db: str
    tracking_db: str

    @property
    def storage(self) -> str:
        """Optuna storage URL (``postgresql://``: psycopg 3, SQLAlchemy 2.1's default)."""
        return self.server.url(self.storage_db)

    @property
    def tracking(self) -> str:
        """MLflow tracking URI (its SQLAlchemy backend store on PostgreSQL)."""
        return self.server.url(self.tracking_db)

    def __repr__(self) -> str:
        return f"PgDatabases({self.storage_db}, {self.tracking_db} on {self.server!r})"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, removed at the end."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_db(pg_server: PostgresServer) -> Iterator[PgDatabases]:
    """Fresh study and tracking databases for one test (dropped after it)."""
    if not pg_server.running:  # a test that stopped the server and failed before restarting it
        pg_server.start()
    dbs = PgDatabases(pg_server, pg_server.create_database(), pg_server.create_database())
    yield dbs
    with contextlib.suppress(Exception):
        if not pg_server.running:
            pg_server.start()
        pg_server.drop_database(dbs.storage_db)
        pg_server.drop_database(dbs.tracking_db)
