"""Where a PostgreSQL sweep's database time goes: bench/scale.py's orch run with pg_stat_statements.

Runs ``bench/scale.py``'s orch sweep (no-op trials, TPE, 64 at a time) on a throwaway PostgreSQL
server with ``pg_stat_statements`` loaded, snapshots the statements' calls and execution time
and the tables' row and scan counts every minute, and writes per 3-minute window the statements
that took most of the server's time (``--out``), with the run's per-block table.

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
TABLES = "SELECT relname, n_live_tup, n_dead_tup, seq_scan, idx_scan FROM pg_stat_user_tables"


def snapshots(server: PostgresServer, databases: list[str], stop: threading.Event) -> list[Any]:
    """Every minute until ``stop``: the statements' counters and the tables' (in a thread)."""
    taken: list[dict[str, Any]] = []

    def take() -> None:
        while not stop.wait(60):
            tables = [row for db in databases for row in server.execute(TABLES, db)]
            taken.append({"t": time.time(), "stmts": server.execute(STATEMENTS), "tables": tables})

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
        trials = next((r[1] for r in b["tables"] if r[0] == "trials"), None)
        out.append({
            "seconds": round(b["t"] - a["t"]),
            "trials_at_end": trials,
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
    databases: list[str] = []
    create = server.create_database

    def create_database(name: str | None = None) -> str:
        created = create(name)
        databases.append(created)
        return created

    server.create_database = create_database  # type: ignore[method-assign]
    stop = threading.Event()
    taken = snapshots(server, databases, stop)
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
