"""Reading back what a sweep wrote: the Optuna study and the MLflow runs.

The ``*_so_far`` readers are for polling a sweep that may not have created its stores yet:
they return None until it has, and let every other error through.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import sqlite3
import struct
import subprocess
import termios
import time
from pathlib import Path

import optuna
from mlflow import MlflowClient
from mlflow.entities import Run

from orchestrator.names import StudyAttr


def load(workspace: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workspace}/optuna.db")


def client(workspace: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workspace}/mlflow.db")


def runs(workspace: Path, name: str) -> tuple[Run, list[Run]]:
    """The parent run and the child runs of experiment ``name``."""
    found = runs_so_far(workspace, name)
    assert found is not None, f"no experiment {name!r} in {workspace}"
    parent, children = found
    assert parent is not None, f"no parent run in experiment {name!r}"
    return parent, children


def study_so_far(workspace: Path, name: str) -> optuna.Study | None:
    """Study ``name`` once the sweep has created it (None before).

    Optuna's storage writes its version rows when opened, racing the sweep that creates the
    file: look with plain sqlite first, and open it only once the study is in it.
    """
    file = workspace / "optuna.db"
    if not file.exists():
        return None
    with contextlib.closing(sqlite3.connect(file, timeout=30)) as db:
        try:
            found = db.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
    if found is None:
        return None
    return optuna.load_study(study_name=name, storage=f"sqlite:///{file}")


def runs_so_far(workspace: Path, name: str) -> tuple[Run | None, list[Run]] | None:
    """The parent run and the child runs of experiment ``name``; None before the sweep's
    tracker has created its store (a reader racing it would run MLflow's migrations twice)."""
    study = study_so_far(workspace, name)
    if study is None or StudyAttr.PARENT_RUN_ID not in study.user_attrs:
        return None
    c = client(workspace)
    experiment = c.get_experiment_by_name(name)
    if experiment is None:
        return None
    found = c.search_runs([experiment.experiment_id], max_results=10000)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) <= 1, [r.info.run_name for r in parents]
    return (parents[0] if parents else None), children


#: Terminal control sequences: colours, cursor moves, hyperlinks (OSC 8) and titles.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def on_pty(
    command: list[str], *, columns: int = 80, env: dict[str, str], cwd: Path, timeout: float = 300
) -> tuple[int, str]:
    """Run ``command`` in a pseudo-terminal ``columns`` wide; its exit code and what it showed.

    Colours, links and cursor moves are removed, so the text is what a person reads.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        command,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env={**env, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = b"".join(chunks).decode(errors="replace")
    return code, _ANSI.sub("", text).replace("\r\n", "\n")
