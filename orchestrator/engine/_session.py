"""The Ray a sweep runs on: a local one started here, or a cluster reached by address."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import ray

from orchestrator.credentials import use_cluster_token
from orchestrator.errors import ClusterError, one_line
from orchestrator.shipping import plan, write_package

__all__ = ["ray_output_to", "ray_session", "stderr_on_own_descriptor"]


@contextlib.contextmanager
def ray_session(
    *,
    address: str | None,
    project: Path,
    log_to_driver: bool = True,
    log_file: Path | None = None,
) -> Iterator[None]:
    """Start a local Ray, or connect to a cluster and ship the project folder to its workers.

    A Ray already initialised in this process is used as is and left running.

    Args:
        address: the cluster (default: ``RAY_ADDRESS``, else a local Ray started here).
        project: the folder shipped to a cluster's workers as their working dir.
        log_to_driver: let Ray print its workers' output here (ignored with ``log_file``).
        log_file: where Ray's own logging goes instead of this process's stderr (see
            :func:`ray_output_to`); the workers' output then stays in Ray's worker logs.

    Raises:
        ClusterError: Ray could not be started or reached.
    """
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    with contextlib.ExitStack() as stack:
        if log_file is not None:
            stack.enter_context(ray_output_to(log_file))
            log_to_driver = False
        if address is not None:
            use_cluster_token(address)
        try:
            with _shipped_project(project, address) as runtime_env:
                ray.init(
                    address=address,
                    include_dashboard=False if address is None else None,
                    runtime_env=runtime_env,
                    log_to_driver=log_to_driver,
                    logging_level=logging.INFO if log_file is not None else logging.WARNING,
                    configure_logging=True,
                )
        except Exception as exc:
            where = address or "a local Ray"
            raise ClusterError(f"cannot start or reach {where}: {one_line(exc)}") from None
        try:
            yield
        finally:
            if address is None:
                _stop_autoscaler_monitor()
            ray.shutdown()


def _stop_autoscaler_monitor() -> None:
    """Kill the autoscaler monitor of the local Ray this process started, before shutdown.

    ``ray.shutdown`` stops it after the GCS; its SIGTERM handler then tries to tell the GCS and
    uses up the whole second Ray allows before killing it (shutdown ~1.1 s instead of ~0.3 s
    here). A one-node Ray has nothing for it to scale, and killed first it tells no one.
    Reached through Ray's private node object: if that changes, Ray's own shutdown does it.
    """
    with contextlib.suppress(Exception):
        from ray._private import ray_constants, worker

        node: Any = worker._global_node
        for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []):
            info.process.kill()
            info.process.wait(timeout=1)


@contextlib.contextmanager
def ray_output_to(log_file: Path) -> Iterator[None]:
    """Send Ray's own output to ``log_file`` (appended) while the context lasts.

    The ``ray`` logger writes there instead of stderr. When Python's ``sys.stderr`` writes to
    a descriptor of its own (the ``orch`` command arranges that, see
    :func:`stderr_on_own_descriptor`), descriptor 2 is pointed at the file too: Ray's C++
    core, and every process Ray starts from here, inherit it, and what orch prints is not
    affected.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("ray")
    with log_file.open("a", encoding="utf-8", errors="backslashreplace") as stream:
        handler = logging.StreamHandler(stream)
        handlers, logger.handlers = logger.handlers, [handler]
        saved = _point_stderr_descriptor_at(stream)
        try:
            yield
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            logger.handlers = handlers


def _point_stderr_descriptor_at(stream: IO[str]) -> int | None:
    """Point descriptor 2 at ``stream`` unless Python's stderr still writes there; return a
    copy of what it pointed at before (None when left alone)."""
    try:
        if sys.stderr.fileno() == 2:
            return None
    except (AttributeError, ValueError, OSError):  # e.g. a notebook's stream: no descriptor
        pass
    saved = os.dup(2)
    os.dup2(stream.fileno(), 2)
    return saved


@contextlib.contextmanager
def stderr_on_own_descriptor() -> Iterator[None]:
    """Give Python's ``sys.stderr`` a descriptor of its own (a copy of 2) while it lasts.

    Then :func:`ray_output_to` can take descriptor 2 for Ray's output while everything orch
    prints (progress, errors, warnings) still reaches the terminal. Enter it before anything
    (a rich progress display) captures ``sys.stderr``.
    """
    sys.stderr.flush()
    own = os.fdopen(
        os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace"
    )
    previous, sys.stderr = sys.stderr, own
    try:
        yield
    finally:
        sys.stderr = previous
        own.close()


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
