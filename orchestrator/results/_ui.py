"""Serving a sweep's results to a browser: the MLflow UI on its tracking store, or optuna-dashboard.

Servers bind to 127.0.0.1 unless asked otherwise, run in their own process group (so stopping
one stops its workers too) on a leash (:mod:`orchestrator._leash`: they die with the process
that started them, however it ends), get store URLs by environment or a user-only file (never
on a command line, where a password would show), and write their output to a log file rather
than the terminal.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from orchestrator._leash import leashed
from orchestrator._net import LOCALHOST, family, free_port, http_ok, reachable_host, url_host
from orchestrator.errors import OrchError, redact
from orchestrator.study import JOURNAL_PREFIX, journal_path
from orchestrator.workspace import sqlite_path

#: Where ``orch ui`` serves the MLflow UI unless told otherwise (on 127.0.0.1).
DEFAULT_UI_PORT = 5000

__all__ = [
    "DEFAULT_UI_PORT",
    "UiServer",
    "is_server",
    "start_mlflow_ui",
    "start_optuna_dashboard",
]


@dataclass
class UiServer:
    """A started web UI: its address, process and log file; a context manager that stops it."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    #: A user-only file the server reads its settings from (removed when it stops).
    config_path: Path | None = None

    def wait(self) -> int:
        """Block until the server exits; return its exit code."""
        return self.process.wait()

    def stop(self, timeout_s: float = 10.0, *, keep_log: bool = False) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after ``timeout_s``)."""
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.config_path is not None:
            self.config_path.unlink(missing_ok=True)
        if not keep_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> UiServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def is_server(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` is an MLflow server already (which serves its own UI)."""
    return tracking_uri.startswith(("http://", "https://"))


def start_mlflow_ui(
    *,
    tracking_uri: str,
    host: str = LOCALHOST,
    port: int = DEFAULT_UI_PORT,
    timeout_s: float = 120.0,
) -> UiServer:
    """Start ``mlflow server`` on ``tracking_uri`` (artifacts served) and wait until it answers.

    ``port=0`` picks a free port.

    Raises:
        OrchError: the store is a server already or missing, the port is taken, or the server
            did not answer in ``timeout_s``.
    """
    if is_server(tracking_uri):
        raise OrchError(
            f"ui: {redact(tracking_uri)} is an MLflow server already; open it in a browser"
        )
    port = _check_port(host, port)
    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)]
    command += ["--workers", "1"]
    database = sqlite_path(tracking_uri)
    if database is not None:
        if not database.exists():
            raise OrchError(
                f"ui: no tracking store at {database}; run a sweep first or pass --tracking-uri"
            )
        command += ["--artifacts-destination", str(database.parent / "artifacts")]
    env = {
        **os.environ,
        # The server's job runner serves GenAI evaluations only: not worth its processes here.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_BACKEND_STORE_URI": tracking_uri,  # by environment: not on its command line
    }
    return _start("MLflow UI", command, env, host, port, "/health", timeout_s)


def start_optuna_dashboard(
    *, storage_url: str, host: str = LOCALHOST, port: int = 8080, timeout_s: float = 60.0
) -> UiServer:
    """Start optuna-dashboard (an optional dependency) on the study storage ``storage_url``.

    Raises:
        OrchError: optuna-dashboard is not installed, the port is taken, or it did not answer in
            ``timeout_s``.
    """
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise OrchError(
            "ui --optuna needs optuna-dashboard: pip install optuna-dashboard "
            "(or pip install 'orch[dashboard]')"
        )
    executable = Path(sys.executable).with_name("optuna-dashboard")
    program = str(executable) if executable.exists() else shutil.which("optuna-dashboard")
    if program is None:
        raise OrchError(
            "ui --optuna: optuna_dashboard is importable but its command is not on PATH"
        )
    port = _check_port(host, port)
    settings = {"storage": storage_url}
    if storage_url.startswith(JOURNAL_PREFIX):
        target = str(journal_path(storage_url))
        settings = {"storage": target, "storage_class": "JournalFileStorage"}
    # The storage URL (and any password in it) goes in a user-only settings file.
    handle, config_name = tempfile.mkstemp(prefix="orch-dashboard-", suffix=".toml")
    with os.fdopen(handle, "w") as config:
        config.write("[optuna_dashboard]\n")
        config.writelines(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    command = [program, "--from-config", config_name, "--host", host, "--port", str(port), "-q"]
    return _start(
        "optuna-dashboard",
        command,
        dict(os.environ),
        host,
        port,
        "/",
        timeout_s,
        config_path=Path(config_name),
    )


def _start(
    name: str,
    command: list[str],
    env: dict[str, str],
    host: str,
    port: int,
    probe: str,
    timeout_s: float,
    config_path: Path | None = None,
) -> UiServer:
    """Start ``command`` on a leash, in a session of its own; wait until ``probe`` answers."""
    handle, log_name = tempfile.mkstemp(prefix="orch-ui-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(handle, "wb") as log:
        process = subprocess.Popen(
            leashed(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://{url_host(reachable_host(host))}:{port}"
    server = UiServer(
        name=name, url=url, process=process, log_path=log_path, config_path=config_path
    )
    probe_url = url + probe
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                raise OrchError(
                    f"ui: {name} exited with code {process.returncode}: {_tail(log_path)}"
                )
            if http_ok(probe_url, timeout_s=2):
                return server
            if time.monotonic() > deadline:
                raise OrchError(
                    f"ui: {name} did not answer at {probe_url} within {timeout_s:g}s "
                    f"(log: {log_path})"
                )
            time.sleep(0.5)
    except BaseException:
        server.stop(keep_log=True)
        raise


def _check_port(host: str, port: int) -> int:
    """``port`` if it is free at ``host`` (0: a free one); a one-line error if it is taken."""
    if port == 0:
        return free_port(host)
    with socket.socket(family(host), socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OrchError(
                f"ui: cannot listen on {host}:{port} ({exc.strerror}); "
                "pick another with --port (0 picks a free one)"
            ) from None
    return port


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) if text else f"no output (log: {path})"
