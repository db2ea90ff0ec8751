"""The orch process that drives a study: its record in the study, heartbeats, and liveness."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import optuna

from orchestrator.names import StudyAttr

__all__ = ["GRACE_S", "Owner", "heartbeat", "live_driver"]

#: How long a driver may miss heartbeats before its RUNNING trials count as abandoned.
GRACE_S = 60.0


@dataclass(frozen=True)
class Owner:
    """The orch process that runs a study's trials (its driver)."""

    id: str
    host: str
    pid: int

    @classmethod
    def current(cls) -> Owner:
        """A fresh owner record for this process."""
        return cls(id=uuid.uuid4().hex[:12], host=socket.gethostname(), pid=os.getpid())


def heartbeat(study: optuna.Study, owner: Owner, *, ended: bool = False) -> None:
    """Record that ``owner`` is alive (or, with ``ended``, that it stopped cleanly)."""
    record = {"host": owner.host, "pid": owner.pid, "heartbeat": time.time(), "ended": ended}
    study.set_user_attr(StudyAttr.DRIVER_PREFIX + owner.id, record)


def live_driver(study: optuna.Study, *, grace_s: float = GRACE_S) -> dict[str, Any] | None:
    """The record of an orch driver still running ``study``, if any.

    A driver is gone when it ended, stopped heartbeating for ``grace_s``, or was a process of
    this host that no longer exists. One study has at most one live driver (a second is
    refused), so every RUNNING trial belongs to it, or to none when it is gone.
    """
    now = time.time()
    for key, record in study.user_attrs.items():
        if not key.startswith(StudyAttr.DRIVER_PREFIX) or not isinstance(record, dict):
            continue
        if record.get("ended") or now - float(record.get("heartbeat", 0)) > grace_s:
            continue
        if record.get("host") == socket.gethostname() and not _pid_alive(int(record["pid"])):
            continue
        return record
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
