"""The Ray a sweep runs on: a local one started here, or a cluster reached by address."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from orchestrator.errors import ClusterError, one_line
from orchestrator.shipping import EXCLUDES

__all__ = ["ray_session"]


@contextlib.contextmanager
def ray_session(
    *, address: str | None, project: Path, log_to_driver: bool = True
) -> Iterator[None]:
    """Start a local Ray, or connect to a cluster and ship the project folder to its workers.

    A Ray already initialised in this process is used as is and left running.

    Raises:
        ClusterError: Ray could not be started or reached.
    """
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _use_token_if_available()
    try:
        ray.init(
            address=address,
            include_dashboard=False if address is None else None,
            runtime_env=_shipped_project(project) if address is not None else None,
            log_to_driver=log_to_driver,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    except Exception as exc:
        where = address or "a local Ray"
        raise ClusterError(f"cannot start or reach {where}: {one_line(exc)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _use_token_if_available() -> None:
    """Send Ray's auth token to the cluster when one exists (RAY_AUTH_TOKEN, its path, or
    ~/.ray/auth_token): Ray's client only sends it in token mode, which it reads at import."""
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _shipped_project(project: Path) -> dict[str, Any] | None:
    """The project folder as the workers' working dir, unless a submitted Ray job ships it."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
        return None
    return {
        "working_dir": str(project),
        "excludes": list(EXCLUDES),
    }
