"""Run a command that never outlives the process that started it (the servers of ``orch ui``).

``python -m orchestrator._leash PARENT_PID COMMAND...`` starts COMMAND and waits for it. The
leash dies with PARENT_PID: Linux sends it a parent-death signal, and it checks its parent
every half second anyway; then, or on SIGTERM, SIGINT or SIGHUP, it stops its whole process
group (SIGTERM, SIGKILL after a grace period). Start it in a session of its own, so that group
is the leash, the command and everything the command starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

__all__ = ["leashed"]

#: Seconds between two checks that the parent still lives.
CHECK_S = 0.5
#: Seconds the command gets to stop after SIGTERM before its group is killed.
GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1


def leashed(command: list[str]) -> list[str]:
    """``command`` wrapped so that it dies with this process (start it with a new session)."""
    return [sys.executable, "-m", "orchestrator._leash", str(os.getpid()), *command]


def main(argv: list[str]) -> int:
    """Run ``argv[1:]`` while process ``argv[0]`` lives; return the command's exit code."""
    parent, command = int(argv[0]), argv[1:]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the signal was asked for
        return 1
    child = subprocess.Popen(command)
    while not stopping and child.poll() is None and os.getppid() == parent:
        time.sleep(CHECK_S)
    if child.poll() is None:
        _stop_group(child)
    else:  # it ended by itself: end what it left behind
        _signal_group(signal.SIGTERM)
    return child.returncode if child.returncode is not None else 1


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent dies (elsewhere the loop's check does it)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to every process of this group, then SIGKILL after GRACE_S (the leash too)."""
    _signal_group(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=GRACE_S)
    _signal_group(signal.SIGKILL)


def _signal_group(sig: signal.Signals) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the leash's own SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(0), sig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
