"""The end-of-sweep report's own process, started before the sweep so its imports overlap it.

Optuna's plots and matplotlib take seconds to import; the process imports them while the
sweep runs and then waits on its stdin (MLflow only where it needs it: see ``_report_job``).
:meth:`ReportProcess.send` tells it what to report once the sweep has ended;
:meth:`ReportProcess.cancel` (or the caller's exit, which closes the pipe) lets it end
without doing anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator._sweep import SweepResult

__all__ = ["ReportProcess"]


class ReportProcess:
    """A process that logs a finished sweep's report on its parent run (see ``_report_job``).

    Args:
        log_file: Where the process writes what it does (its last line says why it failed).
        tracking_uri: The sweep's; with a tracking server (http, https) the process imports
            MLflow beforehand too, as such a server's artifacts are uploaded through MLflow.
    """

    def __init__(self, log_file: Path, *, tracking_uri: str) -> None:
        self.log_file = log_file
        here = str(Path(__file__).resolve().parent.parent)  # this orchestrator, whatever the cwd
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        served = urllib.parse.urlparse(tracking_uri).scheme in ("http", "https")
        command = [sys.executable, "-m", "orchestrator.results._report_job", str(log_file)]
        self._process = subprocess.Popen(
            [*command, *(["--import-mlflow"] if served else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # it opens log_file once it has a job: no empty logs
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path},
            start_new_session=True,  # a Ctrl-C at the prompt is not for it
        )

    def send(self, result: SweepResult) -> bool:
        """Ask for the report of ``result``'s study.

        Returns:
            False, and the process ends without a report, when the sweep has no parent run.
        """
        if result.parent_run_id is None:
            self.cancel()
            return False
        job = {
            "study": result.study,
            "storage": result.storage,
            "tracking_uri": result.tracking_uri,
            "parent_run_id": result.parent_run_id,
            "experiment_id": result.experiment_id,
            "artifact_uri": result.artifact_uri,
        }
        self._close_stdin(json.dumps(job).encode())  # store URLs may hold passwords: not argv
        return True

    def cancel(self) -> None:
        """Let the process end without a report (nothing happens once it was sent a job)."""
        self._close_stdin(b"")

    def wait(self) -> int:
        """Wait for the process; return its exit status (1: the report failed)."""
        return self._process.wait()

    def _close_stdin(self, data: bytes) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(data)
            stdin.close()
        except BrokenPipeError:  # it died early: wait() says so
            pass
