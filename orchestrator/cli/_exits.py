"""The exit codes of ``orch`` (a contract: scripts branch on them; README lists them)."""

from __future__ import annotations

from typing import Final

__all__ = [
    "BAD_INPUT",
    "FAILED",
    "INTERRUPTED",
    "NO_TRIAL_COMPLETED",
    "RAY_LOST",
    "SWEEP_EXIT_CODES",
    "SWEEP_PROBLEMS",
]

#: A cluster refused or could not be reached, a server did not start, a submitted job failed.
FAILED: Final = 1
#: Bad input: a spec, an override, an argument; nothing was written.
BAD_INPUT: Final = 2
#: Ray (the local one, the cluster, or the sweep's study hub) was lost mid-sweep: its trials
#: were closed from the driver and queued to re-run; the last line is the ``--resume`` command.
RAY_LOST: Final = 3
#: The sweep ran, but something it should have recorded was not (tracking problems, the
#: end-of-sweep report, runs the recovery could not close); each is printed on its own line.
SWEEP_PROBLEMS: Final = 4
#: The sweep ended without one COMPLETE trial (every trial failed or was pruned).
NO_TRIAL_COMPLETED: Final = 5
#: Ctrl-C (or ``orch stop``): the running trials were closed and queued to re-run.
INTERRUPTED: Final = 130

#: What a sweep's own exit codes mean (``orch submit --follow`` passes them on).
SWEEP_EXIT_CODES: Final = {
    BAD_INPUT: "bad input",
    RAY_LOST: "Ray was lost mid-sweep (continue with --resume)",
    SWEEP_PROBLEMS: "the sweep finished with problems",
    NO_TRIAL_COMPLETED: "no trial completed",
}
