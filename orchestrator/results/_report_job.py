"""A finished sweep's report, logged on its parent run by a process of its own.

``orch sweep`` starts it once its summary is printed (see
:func:`orchestrator._sweep.report_in_background`) so that nobody waits for the plots::

    python -m orchestrator.results._report_job LOG_FILE  < {"study", "storage", "tracking_uri",
                                                            "parent_run_id"} as JSON

The store URLs come on stdin, never on the command line (they may hold passwords); what it
does goes to LOG_FILE. When it fails, the parent run gets the tag ``orch.report_error`` with the
reason, and the log the traceback.
"""

from __future__ import annotations

import json
import sys
import traceback

from orchestrator._logging import quiet_libraries
from orchestrator.credentials import apply_mlflow_credentials
from orchestrator.errors import one_line
from orchestrator.names import Tag

__all__ = ["FAILED", "main"]

#: How the last line of the log starts when the report failed (the reason follows).
FAILED = "report failed: "


def main() -> int:
    """Log the report the job on stdin asks for; return the exit status (1: it failed)."""
    job = json.loads(sys.stdin.read())
    quiet_libraries()
    apply_mlflow_credentials(job["tracking_uri"])
    from mlflow import MlflowClient

    from orchestrator.results._report import log_report
    from orchestrator.results._summary import read_study

    client = MlflowClient(job["tracking_uri"])
    parent = job["parent_run_id"]
    try:
        study = read_study(job["storage"], job["study"])
        files = log_report(study, client=client, parent_run_id=parent)
    except Exception as exc:
        traceback.print_exc()
        reason = one_line(exc, with_type=True)
        client.set_tag(parent, Tag.REPORT_ERROR, reason)
        print(f"{FAILED}{reason}", flush=True)  # the last line: orch sweep shows it
        return 1
    print(f"report of {job['study']!r}: {len(files)} files logged on run {parent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
