"""Where a PostgreSQL sweep's database time goes: bench/scale.py's orch run with pg_stat_statements.

Runs ``bench/scale.py``'s orch sweep (no-op trials, TPE, 64 at a time) on a throwaway PostgreSQL
server with ``pg_stat_statements`` loaded, snapshots the statements' calls and execution time
and the study's trial count every minute, and writes per 3-minute window the statements that
took most of the server's time (``--out``), with the run's per-block table.

    python bench/pg_statements.py [--trials 5000] [--out bench/results/pg-statements.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale

from tests.postgres import PostgresServer

STATEMENTS = (
    "SELECT d.datname, s.query, s.calls, s.total_exec_time FROM pg_stat_statements s "
    "JOIN pg_database d ON d.oid = s.dbid"
)
DATABASES = "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'"
TRIALS = "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'trials'"  # Optuna's


def snapshots(server: PostgresServer, stop: threading.Event) -> list[Any]:
    """Every minute until ``stop``: the statements' counters and the trial count (a thread)."""
    taken: list[dict[str, Any]] = []

    def take() -> None:
        while not stop.wait(60):
            dbs = [db for (db,) in server.execute(DATABASES)]
            counts = [n for db in dbs for (n,) in server.execute(TRIALS, db)]
            taken.append({
                "t": time.time(),
                "stmts": server.execute(STATEMENTS),
                "trials": max(counts, default=None),
            })  # fmt: skip

    threading.Thread(target=take, daemon=True).start()
    return taken


def _totals(stmts: list[Any]) -> dict[tuple[str, str], tuple[int, float]]:
    """Calls and milliseconds per (database, statement text), summing pg_stat_statements' rows
    of one text (top-level and nested entries)."""
    totals: dict[tuple[str, str], tuple[int, float]] = {}
    for db, query, calls, total in stmts:
        before = totals.get((db, query), (0, 0.0))
        totals[db, query] = (before[0] + int(calls), before[1] + float(total))
    return totals


def windows(taken: list[dict[str, Any]], every: int = 3, top: int = 8) -> list[dict[str, Any]]:
    """Per ``every`` snapshots: the server's execution time and its ``top`` statements."""
    out = []
    for a, b in zip(taken[::every], taken[every::every], strict=False):
        before, after = _totals(a["stmts"]), _totals(b["stmts"])
        rows = []
        for key, (calls, total) in after.items():
            calls0, total0 = before.get(key, (0, 0.0))
            if calls > calls0:
                rows.append((total - total0, calls - calls0, " ".join(key[1].split())[:160]))
        rows.sort(reverse=True)
        out.append({
            "seconds": round(b["t"] - a["t"]),
            "trials_at_end": b["trials"],
            "server_exec_ms": round(sum(r[0] for r in rows)),
            "top": [{"ms": round(ms), "calls": n, "ms_per_call": round(ms / n, 3), "query": q}
                    for ms, n, q in rows[:top]],
        })  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/pg-statements.json"))
    args = parser.parse_args()
    server = PostgresServer(
        fast=False,
        settings={"synchronous_commit": "off", "shared_preload_libraries": "pg_stat_statements",
                  "pg_stat_statements.track": "all"},
    )  # fmt: skip
    server.start()
    server.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    stop = threading.Event()
    taken = snapshots(server, stop)
    run_args = argparse.Namespace(
        trials=args.trials, parallel=64, block=1000, stores="postgres", optuna=False, set=[]
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run = scale.run_orch(run_args, "postgres", server, Path(tmp))
    finally:
        stop.set()
        server.close()
    print(scale.table(run), flush=True)
    command = "python bench/pg_statements.py " + " ".join(sys.argv[1:])
    args.out.write_text(
        json.dumps({"command": command, "run": run, "windows": windows(taken)}, indent=1)
    )


if __name__ == "__main__":
    main()
