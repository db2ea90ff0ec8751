"""orch on a real PostgreSQL server (tests/postgres.py): both stores, resume, the result commands.

The sweep tests check the rows in PostgreSQL itself, so they fail if anything quietly fell back
to a sqlite file. No URL's password may show in a message or an output.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import psycopg
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import StudyError, SweepResult, sweep
from orchestrator.cli import main
from orchestrator.study import open_storage
from tests.postgres import USER, PgDatabases, PostgresServer

SPEC = """
name: pg-e2e
job: tests.jobs_for_tests:steps
objective: {metric: loss}
trials: 8
parallel: 4
sampler: {type: tpe, seed: 0, n_startup_trials: 3}
space:
  x: {type: float, low: 0.0, high: 3.0}
fixed: {n_steps: 5}
"""
STEPS = 5


@dataclass
class Ran:
    """What one in-process ``orch`` command did (streams with the password masked)."""

    code: int
    out: str
    err: str
    leaked: bool  # whether the password appeared in either stream


def orch(*args: str, secret: str) -> Ran:
    """Run ``orch ARGS`` in this process (exit code and both streams captured).

    ``secret`` (the server's password) is masked in what comes back, so a failing assertion
    never prints it; ``leaked`` says whether it was there.
    """
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["orch", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    text = out.getvalue(), err.getvalue()
    return Ran(
        code,
        text[0].replace(secret, "***"),
        text[1].replace(secret, "***"),
        leaked=any(secret in t for t in text),
    )


def stores(dbs: PgDatabases) -> list[str]:
    return ["--storage", dbs.storage, "--tracking-uri", dbs.tracking]


def trial_states(dbs: PgDatabases) -> list[tuple]:
    """Trials per state, read from Optuna's table in PostgreSQL itself."""
    return dbs.server.execute("SELECT state, count(*) FROM trials GROUP BY state", dbs.storage_db)


# The fixture itself ------------------------------------------------------------------------


def test_fixture_runs_a_real_password_protected_server(pg_server: PostgresServer) -> None:
    assert pg_server.execute("SELECT version()")[0][0].startswith("PostgreSQL ")
    assert pg_server.execute("SHOW listen_addresses") == [("127.0.0.1",)]
    assert pg_server.execute("SHOW unix_socket_directories") == [("",)]
    assert pg_server.execute("SHOW password_encryption") == [("scram-sha-256",)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host="127.0.0.1", port=pg_server.port, user=USER, password="wrong", dbname="postgres"
        )
    masked = pg_server.password not in repr(pg_server)
    assert masked and "***" in repr(pg_server)
    on_command_lines = []
    for pid in (p for p in Path("/proc").iterdir() if p.name.isdigit()):
        with contextlib.suppress(OSError):
            if pg_server.password.encode() in (pid / "cmdline").read_bytes():
                on_command_lines.append(pid.name)
    assert on_command_lines == []


def test_server_stops_and_starts_keeping_its_data(pg_server: PostgresServer) -> None:
    name = pg_server.create_database()
    try:
        pg_server.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)", name)
        pg_server.stop()
        assert not pg_server.running
        with pytest.raises(psycopg.OperationalError):
            pg_server.execute("SELECT 1", name)
        pg_server.start()
        assert pg_server.execute("SELECT v FROM kept", name) == [(7,)]
    finally:
        if not pg_server.running:
            pg_server.start()
        pg_server.drop_database(name)


def test_study_and_runs_need_two_databases(pg_db: PgDatabases) -> None:
    """Optuna and MLflow both keep an ``alembic_version`` table: one database cannot hold both."""
    open_storage(pg_db.storage)
    with pytest.raises(Exception, match="Can't locate revision"):
        MlflowClient(pg_db.storage).search_experiments()


# A sweep with both stores on PostgreSQL -----------------------------------------------------


@dataclass
class PgSweep:
    """A finished sweep whose study and runs are in PostgreSQL (see :func:`pg_sweep`)."""

    dbs: PgDatabases
    spec: Path
    workspace: Path
    artifacts: Path
    result: SweepResult


@pytest.fixture(scope="module")
def pg_sweep(
    pg_server: PostgresServer, ray_local: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PgSweep]:
    """Sweep SPEC with ``storage`` and ``tracking_uri`` on PostgreSQL (module-wide, read-only)."""
    dbs = PgDatabases(pg_server, pg_server.create_database(), pg_server.create_database())
    folder = tmp_path_factory.mktemp("pg")
    spec = folder / "spec.yaml"
    spec.write_text(SPEC)
    # A non-sqlite tracking URI gets MLflow's default artifact root (./mlruns of the tracker's
    # working folder): give the experiment a place of the test's own instead.
    artifacts = folder / "artifacts"
    MlflowClient(dbs.tracking).create_experiment("pg-e2e", artifact_location=artifacts.as_uri())
    result = sweep(
        spec,
        storage=dbs.storage,
        tracking_uri=dbs.tracking,
        workspace=folder / "ws",
        log_to_driver=False,
    )
    yield PgSweep(dbs, spec, folder / "ws", artifacts, result)
    pg_server.drop_database(dbs.storage_db)
    pg_server.drop_database(dbs.tracking_db)


def test_sweep_keeps_every_trial_and_run_in_postgres(pg_sweep: PgSweep) -> None:
    dbs, result = pg_sweep.dbs, pg_sweep.result
    assert result.errors == []
    assert result.counts["COMPLETE"] == 8
    # Rows in PostgreSQL itself, and no sqlite file anywhere in the workspace.
    assert trial_states(dbs) == [("COMPLETE", 8)]
    runs_by_status = dbs.server.execute(
        "SELECT status, count(*) FROM runs GROUP BY status", dbs.tracking_db
    )
    assert runs_by_status == [("FINISHED", 9)]  # parent + 8 children
    assert not pg_sweep.workspace.exists() or not list(pg_sweep.workspace.rglob("*.db"))

    study = optuna.load_study(study_name="pg-e2e", storage=dbs.storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 8
    client = MlflowClient(dbs.tracking)
    experiment = client.get_experiment_by_name("pg-e2e")
    found = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_id: r for r in found if "mlflow.parentRunId" in r.data.tags}
    assert [p.info.run_id for p in parents] == [result.parent_run_id]
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["orch.best_trial"] == str(study.best_trial.number)
    assert len(children) == 8
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == list(range(STEPS))
        run = children[trial.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert float(run.data.params["x"]) == pytest.approx(trial.params["x"])
        for metric in ("loss", "step_sq"):
            history = client.get_metric_history(run.info.run_id, metric)
            # Every reported step is there (the final loss is logged again at the last step).
            assert {m.step for m in history} == set(range(STEPS)), metric
    assert (pg_sweep.artifacts / result.parent_run_id / "artifacts" / "spec.yaml").exists()


def test_result_commands_read_postgres(pg_sweep: PgSweep, tmp_path: Path) -> None:
    dbs = pg_sweep.dbs
    status = orch("status", "pg-e2e", *stores(dbs), "--json", secret=dbs.server.password)
    assert status.code == 0, status.err
    (entry,) = json.loads(status.out)["studies"]
    assert entry["counts"]["COMPLETE"] == 8

    best = orch("best", "pg-e2e", "--top", "3", *stores(dbs), "--json", secret=dbs.server.password)
    assert best.code == 0, best.err
    summary = json.loads(best.out)
    assert len(summary["best_trials"]) == 3 and summary["problems"] == []
    assert summary["best_trials"][0]["mlflow_run"]["run_id"]

    exported = orch(
        "export",
        "pg-e2e",
        "-o",
        str(tmp_path / "t.parquet"),
        *stores(dbs),
        secret=dbs.server.password,
    )
    assert exported.code == 0, exported.err
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "t.parquet").num_rows == 8
    assert pq.read_table(tmp_path / "t.intermediate.parquet").num_rows == 8 * STEPS


def test_resume_on_postgres_tops_the_study_up(
    pg_server: PostgresServer, ray_local: None, tmp_path: Path
) -> None:
    dbs = PgDatabases(pg_server, pg_server.create_database(), pg_server.create_database())
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("pg-e2e", "pg-resume"))
    MlflowClient(dbs.tracking).create_experiment(
        "pg-resume", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    base = [str(spec), *stores(dbs), "--workspace", str(tmp_path / "ws"), "--json"]
    first = orch("sweep", *base, "--trials", "3", secret=pg_server.password)
    assert first.code == 0, first.err
    again = orch("sweep", *base, "--trials", "5", "--resume", secret=pg_server.password)
    assert again.code == 0, again.err
    assert json.loads(again.out)["parent_run_id"] == json.loads(first.out)["parent_run_id"]
    assert trial_states(dbs) == [("COMPLETE", 5)]
    assert pg_server.execute(
        "SELECT count(*) FROM runs WHERE status = 'FINISHED'", dbs.tracking_db
    ) == [(6,)]


# Passwords masked, the database's own reason, an empty database (docs/scaling.md) ---------


def test_storage_errors_do_not_echo_the_password(pg_db: PgDatabases) -> None:
    with pytest.raises(StudyError) as caught:
        open_storage(pg_db.server.url("no_such_database"), read_only=True)
    leaked = pg_db.server.password in str(caught.value)
    assert not leaked


def test_storage_errors_say_what_went_wrong(pg_db: PgDatabases) -> None:
    with pytest.raises(StudyError) as caught:
        open_storage(pg_db.server.url("no_such_database"), read_only=True)
    assert "no_such_database" in str(caught.value).replace(pg_db.server.url(""), "")
    assert "does not exist" in str(caught.value)


def test_status_on_an_empty_database_says_run_a_sweep_first(pg_db: PgDatabases) -> None:
    ran = orch("status", *stores(pg_db), secret=pg_db.server.password)
    assert ran.code == 2 and "run a sweep first" in ran.err


def test_result_commands_do_not_print_the_password(pg_sweep: PgSweep) -> None:
    dbs = pg_sweep.dbs
    for args in (("status", *stores(dbs)), ("status", "--json", *stores(dbs))):
        ran = orch(*args, secret=dbs.server.password)
        assert ran.code == 0, ran.err
        assert not ran.leaked, args[:2]
    leaked = dbs.server.password in json.dumps(pg_sweep.result.to_dict())
    assert not leaked
