"""``orch cluster up/down/status``, ``orch submit``, ``orch jobs``, ``orch logs``, ``orch stop``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli import _options as opt
from orchestrator.cli._app import app, err, out
from orchestrator.cli._exits import SWEEP_EXIT_CODES
from orchestrator.cli._forward import as_arguments, with_options_of
from orchestrator.cli._shipment import print_submission
from orchestrator.cli._tables import print_json
from orchestrator.cli.sweep import sweep_command
from orchestrator.errors import ClusterError

if TYPE_CHECKING:
    from orchestrator.cluster import Connection

cluster_app = typer.Typer(
    name="cluster",
    help="Start, stop and list clusters (Ray's cluster launcher, token auth, MLflow on the head).",
    no_args_is_help=True,
)
app.add_typer(cluster_app, rich_help_panel="Clusters")

ConfigArg = Annotated[
    Path, typer.Argument(help="Cluster config: the YAML `ray up` takes.", show_default=False)
]
JobArg = Annotated[str, typer.Argument(help="The job id orch submit printed.")]
FollowOpt = Annotated[bool, typer.Option("--follow", "-f", help="Stream the log until it ends.")]


def _say(message: str) -> None:
    err.print(message, markup=False, highlight=False, soft_wrap=True)


# orch cluster ... ----------------------------------------------------------------------------


@cluster_app.command("up")
def up_command(config: ConfigArg) -> None:
    """Start a cluster with token auth, an MLflow server (basic auth) and the Optuna storage."""
    from orchestrator.cluster import MLFLOW_USER, ClusterFolder, up

    state = up(config, say=_say)
    folder = ClusterFolder.of(state["name"])
    out.print(f"[bold]{state['name']}[/] is up", highlight=False)
    lines = [
        f"dashboard / job API:  {state['address']}",
        f"MLflow:               {state['tracking_uri']} (user {MLFLOW_USER})",
        f"secrets:              {folder.secrets}",
    ]
    if state.get("tunnel"):
        lines.append(f"open a tunnel first:  {state['tunnel']}")
    lines.append(
        f"submit a sweep:       orch submit SPEC.yaml --address {state['address']} --follow"
    )
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


@cluster_app.command("down")
def down_command(
    config: Annotated[str, typer.Argument(help="Cluster config (or the cluster's name).")],
) -> None:
    """Stop every process and node of a cluster; its data and secrets stay in its folder."""
    from orchestrator.cluster import down

    state = down(config, say=_say)
    out.print(f"[bold]{state['name']}[/] is down", highlight=False)


@cluster_app.command("status")
def status_command(json_: opt.Json = False) -> None:
    """Clusters started from this machine, and whether they still run."""
    from orchestrator.cluster import status

    found = status()
    if json_:
        print_json({"clusters": found})
        return
    if not found:
        out.print("no cluster started here (orch cluster up CLUSTER.yaml)")
        return
    table = Table(title="clusters")
    for column in ("cluster", "provider", "state", "job API", "MLflow"):
        table.add_column(column, no_wrap=True)
    for state in found:
        table.add_row(
            state["name"],
            state["provider"],
            "[green]up[/]" if state["up"] else "[red]not answering[/]",
            state["address"],
            state["tracking_uri"],
        )
    out.print(table)


@cluster_app.command("env")
def env_command(name: Annotated[str, typer.Argument(help="The cluster's name.")]) -> None:
    """Print shell exports that point Ray and MLflow clients at a cluster (secrets by file)."""
    from orchestrator.cluster import MLFLOW_PASSWORD_FILE, MLFLOW_USER, PG_PASSFILE, ClusterFolder

    folder = ClusterFolder.of(name)
    state = folder.state()
    if state is None:
        raise ClusterError(f"cluster {name!r} is not up (no {folder.state_file})")
    password = folder.secrets / MLFLOW_PASSWORD_FILE
    sys.stdout.write(
        f"export RAY_API_SERVER_ADDRESS={state['address']}\n"
        f"export RAY_AUTH_TOKEN_PATH={folder.token_file}\n"
        f"export MLFLOW_TRACKING_URI={state['tracking_uri']}\n"
        f"export MLFLOW_TRACKING_USERNAME={MLFLOW_USER}\n"
        f'export MLFLOW_TRACKING_PASSWORD="$(cat {password})"\n'
    )
    if state.get("postgres"):  # the head's PostgreSQL: the study, password by file
        sys.stdout.write(
            f"export ORCH_STORAGE={state['storage']}\n"
            f"export PGPASSFILE={folder.secrets / PG_PASSFILE}\n"
        )


@cluster_app.command("mlflow")
def mlflow_command(
    secrets: Annotated[
        Path, typer.Option(help="Folder with mlflow_password and mlflow_secret_key.")
    ] = Path("~/.orch/cluster/secrets"),
    data: Annotated[
        Path, typer.Option(help="Folder for runs, artifacts, users and the log.")
    ] = Path("~/.orch/cluster"),
    port: Annotated[int, typer.Option(help="Port of the tracking server.")] = 5000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    backend_store_uri: Annotated[
        str | None, typer.Option(help="Run database (default: sqlite in --data).")
    ] = None,
) -> None:
    """Start the MLflow server with basic auth on a head node (used by the cluster configs)."""
    from orchestrator.cluster import start_mlflow

    start_mlflow(
        secrets_dir=secrets,
        data_dir=data,
        host=host,
        port=port,
        backend_store_uri=backend_store_uri,
    )
    out.print(f"MLflow (basic auth) on http://{host}:{port}", markup=False, highlight=False)


# orch submit / jobs / logs / stop ------------------------------------------------------------


@app.command("submit", rich_help_panel="Clusters")
@with_options_of(sweep_command, leave_out=("address",))
def submit_command(
    spec: opt.Spec,
    address: opt.Dashboard = None,
    token_file: opt.TokenFile = None,
    follow: FollowOpt = False,
    allow_version_mismatch: Annotated[
        bool, typer.Option(help="Submit even if orch, Ray or Python differ from the head's.")
    ] = False,
    dry_run: opt.DryRun = False,
    **sweep_options: Any,
) -> None:
    """Run `orch sweep SPEC` on a cluster as a Ray job: ships this project, prints the job id.

    Takes every option of `orch sweep` (but --address, the cluster's own) and passes it on;
    --storage, --tracking-uri and --workspace are as the head sees them.
    """
    from orchestrator.cluster import connect, prepare_submission, submit

    stores = {key: sweep_options.pop(key, None) for key in ("storage", "tracking_uri")}
    submission = prepare_submission(
        spec,
        overrides=sweep_options.get("set_") or [],
        sweep_args=as_arguments(sweep_command, {**sweep_options, "set_": None}),
        stores=stores,
    )
    if dry_run:
        print_submission(submission)
        return
    conn = connect(address=address, token_file=token_file)
    job_id = submit(submission, conn=conn, allow_version_mismatch=allow_version_mismatch, say=_say)
    sys.stdout.write(job_id + "\n")
    sys.stdout.flush()
    if follow:
        _follow(conn, job_id)
    else:
        _say(f"follow it with: orch logs {job_id} --follow --address {conn.address}")


@app.command("jobs", rich_help_panel="Clusters")
def jobs_command(
    address: opt.Dashboard = None,
    token_file: opt.TokenFile = None,
    every: Annotated[bool, typer.Option("--all", help="Every Ray job, not only sweeps.")] = False,
    json_: opt.Json = False,
) -> None:
    """Sweeps submitted to a cluster, newest first, with their status."""
    from orchestrator.cluster import connect, list_jobs

    conn = connect(address=address, token_file=token_file)
    rows = list_jobs(conn, every=every)
    if json_:
        print_json({"address": conn.address, "jobs": rows})
        return
    table = Table(title=f"jobs on {conn.address}")
    for column in ("job", "status", "study", "started"):
        table.add_column(column, no_wrap=True)
    colours = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "cyan", "STOPPED": "yellow"}
    for row in rows:
        colour = colours.get(row["status"], "white")
        started = row["start_time"]
        table.add_row(
            row["job_id"],
            f"[{colour}]{row['status']}[/]",
            row["study"],
            time.strftime("%m-%d %H:%M", time.localtime(started)) if started else "",
        )
    out.print(table)


@app.command("logs", rich_help_panel="Clusters")
def logs_command(
    job: JobArg,
    address: opt.Dashboard = None,
    token_file: opt.TokenFile = None,
    follow: FollowOpt = False,
) -> None:
    """Print a job's log (with --follow, until the job ends; Ctrl-C detaches)."""
    from orchestrator.cluster import connect, job_logs, job_status

    conn = connect(address=address, token_file=token_file)
    if follow:
        job_status(conn, job)  # a clear error for an unknown job
        _follow(conn, job)
        return
    sys.stdout.write(job_logs(conn, job))


@app.command("stop", rich_help_panel="Clusters")
def stop_command(
    job: JobArg, address: opt.Dashboard = None, token_file: opt.TokenFile = None
) -> None:
    """Stop a submitted sweep (its running trials are closed as after Ctrl-C)."""
    from orchestrator.cluster import connect, job_status, stop_job

    conn = connect(address=address, token_file=token_file)
    if stop_job(conn, job):
        out.print(f"stopping {job}", markup=False, highlight=False)
    else:
        out.print(f"{job} had already ended ({job_status(conn, job)})", markup=False)


def _follow(conn: Connection, job_id: str) -> None:
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    from orchestrator.cluster import Detached, follow, job_exit_code

    try:
        status = follow(conn, job_id, write=write)
    except Detached:
        _say(f"detached; {job_id} keeps running (orch logs {job_id} --follow, orch stop {job_id})")
        return
    if status == "FAILED":
        code = job_exit_code(conn, job_id)
        if code is not None and code in SWEEP_EXIT_CODES:  # the sweep said why: pass it on
            _say(f"job {job_id} failed: {SWEEP_EXIT_CODES[code]} (exit code {code})")
            raise typer.Exit(code)
        raise ClusterError(f"job {job_id} failed (orch logs {job_id} has its output)")
    if status == "STOPPED":
        _say(f"job {job_id} was stopped")
        raise typer.Exit(130)
