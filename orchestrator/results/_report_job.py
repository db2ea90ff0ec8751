"""A finished sweep's report, logged on its parent run by a process of its own.

``orch sweep`` starts it before the sweep (:class:`orchestrator._report_process.ReportProcess`):
it imports the plotting libraries while the sweep runs, then waits for its job::

    python -m orchestrator.results._report_job LOG_FILE [--import-mlflow]
        < {"study", "storage", "tracking_uri", "parent_run_id", "experiment_id",
           "artifact_uri"} as JSON

An empty stdin means no report is wanted (nothing is written then). The store URLs come on
stdin, never on the command line (they may hold passwords); what it does goes to LOG_FILE.
MLflow (~4 s of CPU with its database store) is imported only where needed: when the parent
run's artifacts are not on this machine (``--import-mlflow`` imports it beforehand, for a
tracking server) or to tag the parent run with ``orch.report_error`` and the reason when the
report failed (the log has the traceback).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path

from orchestrator._exit import exit_without_teardown
from orchestrator._logging import quiet_libraries
from orchestrator.credentials import apply_mlflow_credentials
from orchestrator.errors import one_line
from orchestrator.names import Tag

__all__ = ["FAILED", "main"]

#: How the last line of the log starts when the report failed (the reason follows).
FAILED = "report failed: "


def main() -> int:
    """Log the report the job on stdin asks for; return the exit status (1: it failed)."""
    os.nice(10)  # background work: its imports must not slow Ray's start beside it
    quiet_libraries()
    import matplotlib.pyplot  # noqa: F401  (the plots' imports, while the sweep runs)
    import optuna.visualization.matplotlib

    with contextlib.suppress(ImportError):  # what opening an SQL study storage imports (~0.5 s)
        import alembic.command
        import alembic.config
        import alembic.migration
        import alembic.script  # noqa: F401
        import optuna.storages._rdb.models  # noqa: F401

    if "--import-mlflow" in sys.argv:
        import mlflow.store.artifact.mlflow_artifacts_repo  # noqa: F401  (a server's uploads)

    from orchestrator.results._report import log_report
    from orchestrator.results._summary import read_study

    sent = sys.stdin.read()
    if not sent.strip():
        return 0  # the sweep needs no report
    _output_to(Path(sys.argv[1]))
    job = json.loads(sent)
    apply_mlflow_credentials(job["tracking_uri"])
    parent = job["parent_run_id"]
    try:
        study = read_study(job["storage"], job["study"])
        files = log_report(
            study,
            tracking_uri=job["tracking_uri"],
            parent_run_id=parent,
            experiment_id=job.get("experiment_id"),
            artifact_uri=job.get("artifact_uri"),
            processes=min(4, os.cpu_count() or 1),
        )
    except Exception as exc:
        traceback.print_exc()
        reason = one_line(exc, with_type=True)
        try:
            from mlflow import MlflowClient

            MlflowClient(job["tracking_uri"]).set_tag(parent, Tag.REPORT_ERROR, reason)
        except Exception:
            traceback.print_exc()  # the reason still ends the log
        print(f"{FAILED}{reason}", flush=True)  # the last line: orch sweep shows it
        return 1
    print(f"report of {job['study']!r}: {len(files)} files logged on run {parent}", flush=True)
    return 0


def _output_to(log_file: Path) -> None:
    """Send this process's stdout and stderr to the end of ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(fd, stream.fileno())
    os.close(fd)


if __name__ == "__main__":
    # Tearing down an interpreter with Optuna's plots, matplotlib and plotly loaded takes
    # ~0.5 s, which ``orch sweep`` would wait for.
    exit_without_teardown(main())
