"""What Optuna's RDBStorage and MLflow's SqlAlchemyStore do when PostgreSQL restarts.

Research for issue 16 (see docs/scaling.md), against a throwaway server from tests/postgres.py:

1. ``probe``: restart the server while nobody calls, then call each store operation once:
   does a pooled connection that the restart killed fail the first call? Then stop the server,
   call each once and record the exception (type chain, first line, time to fail), start it
   and call each again. For Optuna's default engine and with ``pool_pre_ping=True`` (MLflow
   always sets it).
2. ``outage``: a loop of store calls (ask, report, tell; MLflow create_run, log_batch,
   set_terminated) while a thread stops the server for ``--down`` seconds, once bare and once
   through :func:`retrying` (exponential backoff with jitter, transient errors only). Counts
   the calls that failed, the longest wait and whether every report landed.

    python bench/pg_restart.py [--down 10] [--out bench/results/pg_restart.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna
import sqlalchemy.exc
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE, ErrorCode

from tests.postgres import PostgresServer

optuna.logging.set_verbosity(optuna.logging.ERROR)
logging.getLogger("mlflow").setLevel(logging.CRITICAL)
T = TypeVar("T")


# A retry wrapper ------------------------------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database is unreachable now", not a bad request.

    SQLAlchemy's OperationalError/InterfaceError (connection refused, server closed the
    connection, admin shutdown), possibly wrapped by Optuna (StorageInternalError ``from`` it)
    or MLflow (MlflowException TEMPORARILY_UNAVAILABLE, also ``from`` it).
    """
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(
            exc,
            sqlalchemy.exc.OperationalError
            | sqlalchemy.exc.InterfaceError
            | sqlalchemy.exc.DisconnectionError,
        ):
            return True
        if isinstance(exc, MlflowException) and exc.error_code == ErrorCode.Name(
            TEMPORARILY_UNAVAILABLE
        ):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1  # type: ignore[assignment]
    return False


def retrying(
    call: Callable[[], T],
    *,
    deadline_s: float = 120.0,
    first_s: float = 0.25,
    cap_s: float = 5.0,
    on_wait: Callable[[float, BaseException], None] | None = None,
) -> T:
    """``call()``, retried with capped exponential backoff and full jitter on transient errors.

    Gives up (re-raises) after ``deadline_s`` of failures; other errors are raised at once.
    """
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            waited = time.monotonic() - started
            if not is_transient(exc) or waited > deadline_s:
                raise
            pause = random.uniform(0, min(cap_s, first_s * 2**attempt))
            if on_wait is not None:
                on_wait(waited, exc)
            time.sleep(pause)
            attempt += 1


def chain(exc: BaseException) -> list[str]:
    """The exception and its causes: ``Type: first line`` each (no URL: none carries it)."""
    out = []
    while exc is not None and len(out) < 5:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        out.append(f"{type(exc).__module__}.{type(exc).__name__}: {first}")
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return out


# 1. probe -------------------------------------------------------------------------------------


def _operations(server: PostgresServer, engine_kwargs: dict[str, Any]) -> dict[str, Callable]:
    storage = optuna.storages.RDBStorage(
        server.url(server.create_database()), engine_kwargs=engine_kwargs
    )
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    client = MlflowClient(server.url(server.create_database()))
    experiment = client.create_experiment("e", artifact_location=tempfile.mkdtemp())
    run_id = client.create_run(experiment).info.run_id
    step = iter(range(1, 10**6))

    def optuna_ask() -> Any:
        return study.ask()

    def optuna_report() -> Any:
        return storage.set_trial_intermediate_value(trial._trial_id, next(step), 1.0)

    def optuna_get_all_trials() -> Any:
        return storage.get_all_trials(study._study_id)

    def mlflow_log_batch() -> Any:
        return client.log_batch(run_id, metrics=[Metric("m", 1.0, 0, next(step))])

    def mlflow_create_run() -> Any:
        return client.create_run(experiment)

    return {
        "optuna ask (create_new_trial)": optuna_ask,
        "optuna set_trial_intermediate_value": optuna_report,
        "optuna get_all_trials": optuna_get_all_trials,
        "mlflow log_batch": mlflow_log_batch,
        "mlflow create_run": mlflow_create_run,
    }


def _call_each(ops: dict[str, Callable]) -> dict[str, Any]:
    found = {}
    for name, op in ops.items():
        started = time.perf_counter()
        try:
            op()
            found[name] = {"ok": True}
        except Exception as exc:
            found[name] = {"error": chain(exc), "transient": is_transient(exc)}
        found[name]["s"] = round(time.perf_counter() - started, 3)
    return found


def probe(server: PostgresServer, mode: str) -> dict[str, Any]:
    """Each operation after a restart nobody saw, while down, and after a restart; 2 engines."""
    report: dict[str, Any] = {}
    engines = (("optuna default engine", {}), ("pool_pre_ping", {"pool_pre_ping": True}))
    for label, kwargs in engines:
        ops = _operations(server, kwargs)
        _call_each(ops)  # every pool holds a live connection now
        server.stop(mode)
        server.start()
        idle = _call_each(ops)
        _call_each(ops)
        server.stop(mode)
        down = _call_each(ops)
        server.start()
        after = _call_each(ops)
        report[label] = {
            "first call after a restart with no call while down": idle,
            "while down": down,
            "first call after the restart": after,
        }
    return report


# 2. outage ------------------------------------------------------------------------------------


def outage(server: PostgresServer, *, down_s: float, wrapped: bool, steps: int) -> dict[str, Any]:
    """Trials with ``steps`` reports each, Optuna and MLflow, while the server goes away."""
    storage = optuna.storages.RDBStorage(server.url(server.create_database()))
    study = optuna.create_study(storage=storage)
    client = MlflowClient(server.url(server.create_database()))
    experiment = client.create_experiment("e", artifact_location=tempfile.mkdtemp())
    waits: list[float] = []
    failures: list[str] = []

    def call(fn: Callable[[], T]) -> T | None:
        try:
            if wrapped:
                return retrying(fn, on_wait=lambda waited, exc: waits.append(waited))
            return fn()
        except Exception as exc:
            failures.append(chain(exc)[0])
            return None

    def bounce() -> None:
        time.sleep(1.0)
        server.stop("fast")
        time.sleep(down_s)
        server.start()

    bouncer = threading.Thread(target=bounce)
    bouncer.start()
    started = time.monotonic()
    trials = 0
    while bouncer.is_alive() or time.monotonic() - started < down_s + 3:
        trial = call(study.ask)
        run = call(lambda: client.create_run(experiment))
        if trial is None:
            continue
        run_id = run.info.run_id if run is not None else None
        for step in range(steps):
            call(lambda s=step, t=trial: storage.set_trial_intermediate_value(t._trial_id, s, s))
            if run_id is not None:
                call(lambda s=step, r=run_id: client.log_batch(r, [Metric("m", s, 0, s)]))
        call(lambda t=trial: study.tell(t, 1.0))
        if run_id is not None:
            call(lambda r=run_id: client.set_terminated(r))
        trials += 1
        time.sleep(0.05)
    bouncer.join()
    kept = [t for t in study.get_trials(deepcopy=False) if len(t.intermediate_values) == steps]
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "wrapped": wrapped,
        "down_s": down_s,
        "trials_started": trials,
        "trial_states": states,
        "trials_with_every_report": len(kept),
        "failed_calls": len(failures),
        "first_failures": sorted(set(failures))[:4],
        "retried_calls": len(waits),
        "longest_wait_s": round(max(waits, default=0.0), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/pg_restart.json"))
    args = parser.parse_args()
    server = PostgresServer()
    try:
        server.start()
        results = {
            "probe (pg_ctl stop -m fast)": probe(server, "fast"),
            "probe (pg_ctl stop -m immediate, like a crash)": probe(server, "immediate"),
            "outage bare": outage(server, down_s=args.down, wrapped=False, steps=args.steps),
            "outage with retrying()": outage(
                server, down_s=args.down, wrapped=True, steps=args.steps
            ),
        }
    finally:
        server.close()
    text = json.dumps(results, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
