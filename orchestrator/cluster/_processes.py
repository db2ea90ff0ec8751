"""The processes of a local cluster: recorded as orch starts them, and found again only while
they are provably the same processes (same boot, same start times) before any is signalled.

A session orch started is recorded as its id and the ``(pid, start time)`` of the processes in
it at that moment. After a reboot, or once all of them have ended, the recorded ids may belong
to anyone: such a session is no longer the cluster's, and nothing in it is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import ClusterError

__all__ = ["boot_id", "cluster_processes", "session_record", "stop_processes"]

_STOP_GRACE_S = 5.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class _Process:
    ppid: int
    sid: int
    start: int  # clock ticks after boot


def boot_id() -> str:
    """This boot of the machine (Linux: changes at every reboot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def session_record(sid: int) -> dict[str, Any]:
    """The session ``sid`` as it is now: its id and ``[pid, start time]`` of its processes."""
    members = [[pid, p.start] for pid, p in sorted(_process_table().items()) if p.sid == sid]
    return {"sid": sid, "members": members}


def cluster_processes(state: dict[str, Any]) -> list[int]:
    """Live processes of a local cluster: its verified sessions and their descendants."""
    table = _process_table()
    sessions = _verified(state, table)
    if not sessions:
        return []
    found = {pid for pid, p in table.items() if p.sid in sessions}
    children: dict[int, list[int]] = {}
    for pid, p in table.items():
        children.setdefault(p.ppid, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


def stop_processes(state: dict[str, Any], say: Say) -> None:
    """SIGTERM the cluster's processes, SIGKILL what is left after a grace period.

    Raises:
        ClusterError: some would not stop.
    """
    recorded = len(state.get("sessions") or [])
    verified = len(_verified(state, _process_table()))
    if verified < recorded:
        say(
            f"{recorded - verified} of the {recorded} sessions {state['name']} recorded are no "
            "longer its own (ended, or the machine restarted): left alone"
        )
    pids = cluster_processes(state)
    if not pids:
        return
    say(f"stopping {len(pids)} processes of {state['name']}")
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    while time.monotonic() < deadline and cluster_processes(state):
        time.sleep(0.25)
    _signal(cluster_processes(state), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and cluster_processes(state):
        time.sleep(0.1)
    left = cluster_processes(state)
    if left:
        raise ClusterError(f"processes {left} of {state['name']} would not stop")


def _verified(state: dict[str, Any], table: dict[int, _Process]) -> set[int]:
    """Recorded sessions with at least one recorded process still alive, same start, same boot."""
    if not state.get("boot_id") or state.get("boot_id") != boot_id():
        return set()
    verified = set()
    for record in state.get("sessions") or []:
        if not isinstance(record, dict):
            continue  # recorded by an older orch: cannot be told apart from a stranger's
        sid = int(record.get("sid", -1))
        for pid, start in record.get("members") or []:
            found = table.get(int(pid))
            if found is not None and found.sid == sid and found.start == int(start):
                verified.add(sid)
                break
    return verified


def _process_table() -> dict[int, _Process]:
    """Every live (non-zombie) process: parent, session and start time."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            table[int(entry)] = _Process(int(fields[1]), int(fields[3]), int(fields[19]))
    return table


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
