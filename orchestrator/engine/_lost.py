"""Telling that Ray is gone (the local Ray's processes died, a cluster went away) from other
errors, and the liveness check that notices it when nothing raises."""

from __future__ import annotations

import logging

import ray.exceptions as rex

from orchestrator.errors import one_line

__all__ = ["LOST_AFTER_S", "PROBE_GROUP", "RayLost", "lost_reason"]

#: How long the study hub may leave a liveness probe unanswered before Ray counts as lost.
LOST_AFTER_S = 20.0
#: The hub's concurrency group for probes: answered at once, even while it works on an ask.
PROBE_GROUP = "probe"


class RayLost(Exception):
    """Ray stopped answering the driver (raised by the trial loop's liveness check)."""


def lost_reason(exc: BaseException) -> str | None:
    """What was lost, in a few words, when ``exc`` says Ray or the sweep's actors are gone.

    None for every other error (a bug, a failing store): those are not Ray's loss. Ray's own
    message (long, with ids) is logged on the ``ray`` logger: in Ray's log, not on screen.
    """
    if isinstance(exc, RayLost):
        reason = str(exc)
    elif isinstance(exc, rex.RayActorError):
        reason = f"the sweep's Ray actors are unreachable ({type(exc).__name__})"
    elif isinstance(exc, (rex.LocalRayletDiedError, rex.RaySystemError)):
        reason = f"Ray's node on this machine stopped ({type(exc).__name__})"
    else:
        return None
    logging.getLogger("ray").error("orch: %s: %s", reason, one_line(exc, limit=2000))
    return reason
