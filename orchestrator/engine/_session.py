"""The Ray a sweep runs on: a local one started here, or a cluster reached by address."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from orchestrator.credentials import use_cluster_token
from orchestrator.errors import ClusterError, one_line
from orchestrator.shipping import plan, write_package

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
        use_cluster_token(address)
    try:
        with _shipped_project(project, address) as runtime_env:
            ray.init(
                address=address,
                include_dashboard=False if address is None else None,
                runtime_env=runtime_env,
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


@contextlib.contextmanager
def _shipped_project(project: Path, address: str | None) -> Iterator[dict[str, Any] | None]:
    """The project's package (:mod:`orchestrator.shipping`) as the workers' working dir while
    Ray uploads it; none for a local Ray, or when a submitted Ray job shipped it already."""
    if address is None or "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="orch-ship-") as scratch:
        archive = Path(scratch) / "package.zip"
        write_package(plan(project), archive)
        yield {"working_dir": str(archive)}
