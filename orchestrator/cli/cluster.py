"""``orch cluster up/down/status``, ``orch submit``, ``orch jobs``, ``orch logs``, ``orch stop``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orchestrator import cluster, submit
from orchestrator.auth import MLFLOW_PASSWORD_FILE, MLFLOW_USER, ClusterFolder
from orchestrator.cli._common import (
    JsonOpt,
    SetOpt,
    SpecArg,
    app,
    err,
    out,
    print_json,
)
from orchestrator.errors import ClusterError

cluster_app = typer.Typer(
    name="cluster",
    help="Start, stop and list clusters (Ray's cluster launcher, token auth, MLflow on the head).",
    no_args_is_help=True,
)
app.add_typer(cluster_app, rich_help_panel="Clusters")

ConfigArg = Annotated[
    Path, typer.Argument(help="Cluster config: the YAML `ray up` takes.", show_default=False)
]
DashboardOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="The head's dashboard, http://HEAD:8265 (env RAY_API_SERVER_ADDRESS; default: the "
        "one cluster orch cluster up started here).",
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        help="File holding the cluster's Ray token (default: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
        "or the file orch cluster up wrote)."
    ),
]
HeadStorageOpt = Annotated[
    str | None,
    typer.Option(help="Optuna storage URL as the head sees it (default: the cluster's own)."),
]
HeadTrackingOpt = Annotated[
    str | None,
    typer.Option(help="MLflow tracking URI as the head sees it (default: the cluster's server)."),
]
HeadWorkspaceOpt = Annotated[
    Path | None, typer.Option(help="Folder on the head for default stores (orch sweep's).")
]
JobArg = Annotated[str, typer.Argument(help="The job id orch submit printed.")]
FollowOpt = Annotated[bool, typer.Option("--follow", "-f", help="Stream the log until it ends.")]


def _say(message: str) -> None:
    err.print(message, markup=False, highlight=False, soft_wrap=True)


# orch cluster ... ----------------------------------------------------------------------------


@cluster_app.command("up")
def up_command(config: ConfigArg) -> None:
    """Start a cluster with token auth, an MLflow server (basic auth) and the Optuna storage."""
    state = cluster.up(config, say=_say)
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
    state = cluster.down(config, say=_say)
    out.print(f"[bold]{state['name']}[/] is down", highlight=False)


@cluster_app.command("status")
def status_command(json_: JsonOpt = False) -> None:
    """Clusters started from this machine, and whether they still run."""
    found = cluster.status()
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
    cluster.start_mlflow(
        secrets_dir=secrets,
        data_dir=data,
        host=host,
        port=port,
        backend_store_uri=backend_store_uri,
    )
    out.print(f"MLflow (basic auth) on http://{host}:{port}", markup=False, highlight=False)


# orch submit / jobs / logs / stop ------------------------------------------------------------


@app.command("submit", rich_help_panel="Clusters")
def submit_command(
    spec: SpecArg,
    address: DashboardOpt = None,
    token_file: TokenFileOpt = None,
    follow: FollowOpt = False,
    allow_version_mismatch: Annotated[
        bool, typer.Option(help="Submit even if orch, Ray or Python differ from the head's.")
    ] = False,
    trials: Annotated[
        int | None, typer.Option(help="Finished trials the study should hold.")
    ] = None,
    parallel: Annotated[int | None, typer.Option(help="Trials at once.")] = None,
    set_: SetOpt = None,
    storage: HeadStorageOpt = None,
    tracking_uri: HeadTrackingOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue the study of the same name.")] = False,
    workspace: HeadWorkspaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run `orch sweep SPEC` on a cluster as a Ray job: ships this project, prints the job id."""
    forwarded: list[str] = []
    for flag, value in (
        ("--trials", trials),
        ("--parallel", parallel),
        ("--storage", storage),
        ("--tracking-uri", tracking_uri),
        ("--workspace", workspace),
    ):
        if value is not None:
            forwarded += [flag, str(value)]
    forwarded += ["--resume"] * resume + ["--json"] * json_
    conn = submit.connect(address=address, token_file=token_file)
    job_id = submit.submit(
        spec,
        conn=conn,
        overrides=set_ or [],
        sweep_args=forwarded,
        allow_version_mismatch=allow_version_mismatch,
        say=_say,
    )
    sys.stdout.write(job_id + "\n")
    sys.stdout.flush()
    if follow:
        _follow(conn, job_id)
    else:
        _say(f"follow it with: orch logs {job_id} --follow --address {conn.address}")


@app.command("jobs", rich_help_panel="Clusters")
def jobs_command(
    address: DashboardOpt = None,
    token_file: TokenFileOpt = None,
    every: Annotated[bool, typer.Option("--all", help="Every Ray job, not only sweeps.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Sweeps submitted to a cluster, newest first, with their status."""
    conn = submit.connect(address=address, token_file=token_file)
    rows = submit.list_jobs(conn, every=every)
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
    address: DashboardOpt = None,
    token_file: TokenFileOpt = None,
    follow: FollowOpt = False,
) -> None:
    """Print a job's log (with --follow, until the job ends; Ctrl-C detaches)."""
    conn = submit.connect(address=address, token_file=token_file)
    if follow:
        submit.job_status(conn, job)  # a clear error for an unknown job
        _follow(conn, job)
        return
    sys.stdout.write(submit.job_logs(conn, job))


@app.command("stop", rich_help_panel="Clusters")
def stop_command(
    job: JobArg, address: DashboardOpt = None, token_file: TokenFileOpt = None
) -> None:
    """Stop a submitted sweep (its running trials are closed as after Ctrl-C)."""
    conn = submit.connect(address=address, token_file=token_file)
    if submit.stop_job(conn, job):
        out.print(f"stopping {job}", markup=False, highlight=False)
    else:
        out.print(f"{job} had already ended ({submit.job_status(conn, job)})", markup=False)


def _follow(conn: submit.Connection, job_id: str) -> None:
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        status = submit.follow(conn, job_id, write=write)
    except submit.Detached:
        _say(f"detached; {job_id} keeps running (orch logs {job_id} --follow, orch stop {job_id})")
        return
    if status == "FAILED":
        raise ClusterError(f"job {job_id} failed (orch logs {job_id} has its output)")
    if status == "STOPPED":
        _say(f"job {job_id} was stopped")
        raise typer.Exit(130)


def query_head(*, address: str, token_file: Path | None, args: list[str]) -> None:
    """Run ``orch ARGS`` on the head (where the study's storage is) and print its output."""
    conn = submit.connect(address=address, token_file=token_file)
    ok, output = submit.run_on_head(conn, args)
    if not ok:
        lines = [line for line in output.splitlines() if line.strip()]
        raise ClusterError(f"on the head: {lines[-1] if lines else 'no output'}")
    sys.stdout.write(output)
