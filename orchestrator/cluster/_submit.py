"""``orch submit`` and friends: sweeps sent to a cluster as Ray jobs, from a laptop.

Everything goes through Ray's Job Submission API on the head's dashboard port, with the
cluster's token as a bearer header. A sweep job ships the project folder (as Ray packs it:
``.gitignore``/``.rayignore`` honoured) plus the provenance computed here, and runs
``orch sweep`` with the head's own interpreter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import secrets
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.credentials import bearer_headers, known_clusters, resolve_token, write_secret
from orchestrator.errors import ClusterError, one_line
from orchestrator.names import JobMeta
from orchestrator.provenance import SUBMITTED_FILE, collect, package_version
from orchestrator.shipping import IGNORE_FILE, Shipment, plan, write_package
from orchestrator.spec import load_spec
from orchestrator.trial import project_root
from orchestrator.workspace import STORES_FILE, STORES_FILE_ENV

__all__ = [
    "Connection",
    "Detached",
    "HeadInfo",
    "Submission",
    "check_versions",
    "connect",
    "follow",
    "head_info",
    "head_python",
    "job_exit_code",
    "job_logs",
    "job_status",
    "list_jobs",
    "local_versions",
    "package_project",
    "prepare_submission",
    "run_on_head",
    "stop_job",
    "submit",
]

ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"
#: A script run with the head's interpreter: the orch CLI (``orch`` may not be on its PATH).
_ORCH = "import sys; from orchestrator.cli import main; sys.argv[0] = 'orch'; main()"
_PROBE = (
    "import json, os, platform\n"
    "from importlib import metadata\n"
    "def v(name):\n"
    "    try:\n"
    "        return metadata.version(name)\n"
    "    except metadata.PackageNotFoundError:\n"
    "        return None\n"
    "print('ORCH_PROBE ' + json.dumps({'orch': v('orch'), 'ray': v('ray'),"
    " 'python': platform.python_version(),"
    " 'storage': bool(os.environ.get('ORCH_STORAGE')),"
    " 'tracking': bool(os.environ.get('MLFLOW_TRACKING_URI'))}))\n"
)
_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_POLL_S = 1.0
#: Ray's last line about setting a job up, before the entrypoint's own output.
_ENTRYPOINT_LINE = "Running entrypoint for job "
#: Ray's job monitor checks each supervisor actor this often (JobManager, Ray 2.60: 1 s).
_MONITOR_PERIOD_S = 1.5
_FORGET_TRIES = 4  # deletes of a short job the monitor may record again

Say = Callable[[str], None]


class Detached(Exception):
    """Ctrl-C while following a job: the job keeps running."""


@dataclass
class Connection:
    """A Job Submission client for one cluster, authenticated with its token."""

    address: str
    client: Any

    def get(self, endpoint: str) -> Any:
        """GET a dashboard endpoint; return its JSON (via the client: same headers, same errors)."""
        with _translated(self.address):
            response = self.client._do_request("GET", endpoint)
        if response.status_code != 200:
            raise ClusterError(f"{self.address}{endpoint} answered {response.status_code}")
        return response.json()


@dataclass(frozen=True)
class HeadInfo:
    """What runs on the head: its interpreter and versions."""

    python_path: str
    versions: dict[str, Any]


def connect(*, address: str | None, token_file: Path | None) -> Connection:
    """Connect to the Job API of a cluster; raise :class:`ClusterError` with one line on refusal.

    The address is ``address``, else ``$RAY_API_SERVER_ADDRESS``, else the one cluster
    ``orch cluster up`` has running.

    Raises:
        ClusterError: no address is known, or the head refuses the token or cannot be reached.
    """
    from ray.job_submission import JobSubmissionClient

    _quiet_ray()
    address = (address or os.environ.get(ADDRESS_ENV) or _only_cluster()).rstrip("/")
    if "://" not in address:
        address = f"http://{address}"
    token = resolve_token(token_file=token_file, address=address)
    # An explicit (even empty) header stops Ray from sending ~/.ray/auth_token of a local Ray.
    headers = bearer_headers(token) or {"Authorization": ""}
    with _translated(address):
        client = JobSubmissionClient(address, headers=headers)
    return Connection(address=address, client=client)


def _only_cluster() -> str:
    running = [state for f in known_clusters() if (state := f.state())]
    if len(running) == 1:
        return str(running[0]["address"])
    names = ", ".join(s["name"] for s in running) or "none"
    raise ClusterError(
        f"which cluster? pass --address http://HEAD:8265 or set {ADDRESS_ENV} "
        f"(clusters started here: {names})"
    )


@contextmanager
def _translated(address: str) -> Iterator[None]:
    """Turn the Job API's refusals into one-line :class:`ClusterError`."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        text = str(exc)
        if "Forbidden" in text or "403" in text:
            raise ClusterError(
                f"{address} refused the Ray token (403 Forbidden): wrong token; use the token "
                "of this cluster (RAY_AUTH_TOKEN, --token-file, or the file orch cluster up wrote)"
            ) from None
        raise ClusterError(
            f"{address} requires a Ray token (401 Unauthorized): set RAY_AUTH_TOKEN, "
            "pass --token-file, or submit from the machine that ran orch cluster up"
        ) from None
    except (ConnectionError, OSError) as exc:  # requests' and aiohttp's errors are OSErrors
        raise ClusterError(
            f"cannot reach the Ray dashboard at {address}: {one_line(exc)} "
            "(is the cluster up, or the SSH tunnel open?)"
        ) from None
    except RuntimeError as exc:
        raise ClusterError(f"{address}: {one_line(exc)}") from None


# Versions ------------------------------------------------------------------------------------


def local_versions() -> dict[str, Any]:
    """orch, Ray and Python versions of this interpreter."""
    return {
        "orch": package_version("orch"),
        "ray": package_version("ray"),
        "python": platform.python_version(),
    }


def head_info(conn: Connection, *, say: Say = lambda _: None) -> HeadInfo:
    """The head's interpreter and its versions (from a probe job, deleted after).

    Raises:
        ClusterError: the probe job failed.
    """
    python = head_python(conn)
    say("checking versions on the head")
    status, logs = _run_job(conn, f"{shlex.quote(python)} -c {shlex.quote(_PROBE)}", kind="probe")
    line = next((x for x in logs.splitlines() if x.startswith("ORCH_PROBE ")), None)
    if status != "SUCCEEDED" or line is None:
        raise ClusterError(f"version probe on the head failed: {_tail(logs)}")
    return HeadInfo(python_path=python, versions=json.loads(line.removeprefix("ORCH_PROBE ")))


def head_python(conn: Connection) -> str:
    """The interpreter Ray runs workers with on the head, from its raylet's command line."""
    summary = conn.get("/nodes?view=summary")["data"]["summary"]
    head = next((n for n in summary if (n.get("raylet") or {}).get("isHeadNode")), None)
    python = _worker_python(head["cmdline"] if head else [])
    if python is None:
        raise ClusterError(f"{conn.address}: cannot tell which Python runs Ray on the head")
    return python


def check_versions(local: dict[str, Any], remote: dict[str, Any]) -> None:
    """Refuse a head whose orch or Ray differ from this machine's, or whose Python minor does.

    Raises:
        ClusterError: naming each version that differs.
    """
    if not remote.get("orch"):
        raise ClusterError(
            f"orch is not installed in the head's Python; install orch=={local['orch']} there "
            "(setup_commands of the cluster config)"
        )
    problems = [
        f"{name} {local[name]} here, {remote[name]} on the head"
        for name in ("orch", "ray")
        if local[name] != remote[name]
    ]
    if _minor(local["python"]) != _minor(remote["python"]):
        problems.append(f"Python {local['python']} here, {remote['python']} on the head")
    if problems:
        raise ClusterError(
            "version mismatch: " + "; ".join(problems) + " (install the same versions, or pass "
            "--allow-version-mismatch)"
        )


# Submitting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A sweep job as it will be sent: the package, the command, its environment, its stores.

    Built without contacting the cluster (``orch submit --dry-run`` prints it).
    """

    study: str
    spec: str  # the spec's path inside the project
    shipment: Shipment
    #: ``orch sweep`` words after ``sweep`` (spec, options, ``--set``s), never a store URL.
    arguments: list[str]
    #: ``--storage``/``--tracking-uri`` given: sent in the package's stores file, not in argv.
    stores: dict[str, str]
    packages: list[str]

    def entrypoint(self, python: str) -> str:
        """The job's command line with the head's interpreter ``python``."""
        interpreter = '"$VIRTUAL_ENV/bin/python"' if self.packages else shlex.quote(python)
        words = ["-c", _ORCH, "sweep", *self.arguments]
        return " ".join([interpreter, *map(shlex.quote, words)])

    def env_vars(self) -> dict[str, str]:
        """Environment variables of the job (names and paths only, never a secret)."""
        env = {
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "120",
            # `orch stop` = Ctrl-C for the sweep: running trials are closed and requeued.
            "RAY_JOB_STOP_SIGNAL": "SIGINT",
            "RAY_JOB_STOP_WAIT_TIME_S": "60",
        }
        if self.stores:
            env[STORES_FILE_ENV] = STORES_FILE
        return env

    def extra_files(self) -> dict[str, bytes]:
        """Files added to the package: the provenance, and the stores file if any."""
        found = collect(self.shipment.project, self.shipment)
        files = {SUBMITTED_FILE: found.to_json().encode()}
        if self.stores:
            files[STORES_FILE] = json.dumps(self.stores).encode()
        return files


def prepare_submission(
    spec_path: str | Path,
    *,
    overrides: Sequence[str] = (),
    sweep_args: Sequence[str] = (),
    stores: Mapping[str, str | None] | None = None,
) -> Submission:
    """Validate the spec and list what ``orch submit`` would send (contacts no cluster).

    ``stores`` maps ``storage``/``tracking_uri`` to the URLs given for the head; they travel
    in a file of the package, so a password in them is on no command line.

    Raises:
        SpecError: the spec is invalid.
    """
    spec = load_spec(spec_path, overrides=overrides)
    project = project_root(spec_path)
    relative = Path(spec_path).resolve().relative_to(project).as_posix()
    return Submission(
        study=spec.name,
        spec=relative,
        shipment=plan(project),
        arguments=[relative, *sweep_args, *(a for o in overrides for a in ("--set", o))],
        stores={key: value for key, value in (stores or {}).items() if value},
        packages=[*spec.pip, *_pyproject_pip(project)],
    )


def submit(
    submission: Submission,
    *,
    conn: Connection,
    allow_version_mismatch: bool = False,
    say: Say = lambda _: None,
) -> str:
    """Send a prepared ``orch sweep`` to the cluster as a Ray job; return the job id.

    Nothing is uploaded before the package fits and the head's versions match; a refused
    upload leaves no job.

    Raises:
        ClusterError: the head's versions differ, its stores are missing, or the upload failed.
    """
    project = submission.shipment.project
    with tempfile.TemporaryDirectory(prefix="orch-submit-") as scratch:
        archive = Path(scratch) / "package.zip"
        files, size = package_project(submission, archive)
        info = head_info(conn, say=say)
        _check_head(
            info,
            stores=submission.stores,
            allow_version_mismatch=allow_version_mismatch,
            say=say,
        )
        runtime_env: dict[str, Any] = {
            "working_dir": str(archive),
            "env_vars": submission.env_vars(),
        }
        if submission.packages:
            runtime_env["pip"] = {"packages": submission.packages, "pip_check": False}
        job_id = f"orch-{submission.study}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        say(f"uploading {project} ({files} files, {_size(size)})")
        if submission.shipment.secrets:
            say(_secrets_note(submission.shipment))
        with _translated(conn.address):
            try:
                conn.client.submit_job(
                    entrypoint=submission.entrypoint(info.python_path),
                    submission_id=job_id,
                    runtime_env=runtime_env,
                    metadata={
                        JobMeta.KIND: "sweep",
                        JobMeta.STUDY: submission.study,
                        JobMeta.SPEC: submission.spec,
                    },
                )
            except (ValueError, OSError) as exc:
                raise ClusterError(f"upload of {project} failed: {one_line(exc)}") from None
    return job_id


def _secrets_note(shipment: Shipment) -> str:
    names = ", ".join(shipment.secrets[:5]) + (" ..." if len(shipment.secrets) > 5 else "")
    return (
        f"left out {len(shipment.secrets)} secret-looking files ({names}); to ship one, name it "
        f"on a !path line in {IGNORE_FILE}"
    )


def _check_head(
    info: HeadInfo, *, stores: Mapping[str, str], allow_version_mismatch: bool, say: Say
) -> None:
    """Refuse a head with other versions, or without stores for the sweep's results."""
    local = local_versions()
    if allow_version_mismatch:
        say(f"versions: here {local}, head {info.versions}")
    else:
        check_versions(local, info.versions)
    missing = [
        f"{flag} ({env} is not set on the head)"
        for flag, env, key, option in (
            ("--storage", "ORCH_STORAGE", "storage", "storage"),
            ("--tracking-uri", "MLFLOW_TRACKING_URI", "tracking", "tracking_uri"),
        )
        if not info.versions.get(key) and not stores.get(option)
    ]
    if missing:
        raise ClusterError(
            "the sweep's results would be lost with the job's folder: pass "
            + ", ".join(missing)
            + ", or start the cluster with orch cluster up"
        )


def package_project(submission: Submission, archive: Path) -> tuple[int, int]:
    """Zip the submission's files, its provenance and stores file; return (files, bytes).

    Raises:
        ClusterError: the package is over Ray's upload limit.
    """
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    files, size = write_package(submission.shipment, archive, extra=submission.extra_files())
    if size >= GCS_STORAGE_MAX_SIZE:
        raise ClusterError(
            f"{submission.shipment.project} packs to {_size(size)}, over Ray's upload limit of "
            f"{_size(GCS_STORAGE_MAX_SIZE)}: list large files in .gitignore, .rayignore or "
            f"{IGNORE_FILE}"
        )
    return files, size


def _pyproject_pip(project: Path) -> list[str]:
    """``[tool.orch] pip = [...]`` of the project's pyproject.toml (Python 3.10: none)."""
    if sys.version_info < (3, 11):  # no tomllib: the spec's pip field only
        return []
    else:
        import tomllib

        try:
            data = tomllib.loads((project / "pyproject.toml").read_text())
        except (OSError, tomllib.TOMLDecodeError):
            return []
        packages = data.get("tool", {}).get("orch", {}).get("pip", [])
        return [str(p) for p in packages]


# Following, listing, stopping ----------------------------------------------------------------


def follow(conn: Connection, job_id: str, *, write: Callable[[str], None]) -> str:
    """Write the job's log as it grows until the job ends; return its final status.

    The log is streamed (Ray's log tail): each part is downloaded once, never the whole log
    again. Ray's lines about setting the job up are left out. Ctrl-C raises :class:`Detached`
    and leaves the job running.

    Raises:
        Detached: Ctrl-C; the job keeps running.
        ClusterError: the head cannot be reached.
    """
    skip = _SetupLines(write)

    async def tail() -> None:
        async for chunk in conn.client.tail_job_logs(job_id):
            skip.write(chunk)

    try:
        with _translated(conn.address):
            try:
                asyncio.run(tail())
            except RuntimeError as exc:  # the stream broke: what is left comes in one piece
                if "closed unexpectedly" not in str(exc):
                    raise
                skip.catch_up(_user_log(conn.client.get_job_logs(job_id)))
            skip.close()
            status = str(conn.client.get_job_status(job_id).value)
            while status not in _TERMINAL:  # the stream ends with the log, just before the job
                time.sleep(_POLL_S)
                status = str(conn.client.get_job_status(job_id).value)
    except KeyboardInterrupt:
        raise Detached(job_id) from None
    return status


def job_exit_code(conn: Connection, job_id: str) -> int | None:
    """The exit code of the job's command (None while it runs, or if Ray did not record it)."""
    with _translated(conn.address):
        code = conn.client.get_job_info(job_id).driver_exit_code
    return int(code) if code is not None else None


class _SetupLines:
    """Passes a job's log through from the line after Ray's ``Running entrypoint for job``."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._held: list[str] | None = []  # None: the entrypoint's output has begun
        self._sent = 0

    def write(self, text: str) -> None:
        if self._held is None:
            self._send(text)
            return
        self._held.append(text)
        held = "".join(self._held)
        marker = held.find(_ENTRYPOINT_LINE)
        end = held.find("\n", marker) if marker >= 0 else -1
        if end >= 0:
            self._held = None
            self._send(held[end + 1 :])

    def catch_up(self, user_log: str) -> None:
        """Write what ``user_log`` (the whole user part of the log) holds beyond what was sent."""
        if self._held is None:
            self._write(user_log[self._sent :])
            self._sent = len(user_log)

    def close(self) -> None:
        if self._held:  # no entrypoint line (the job never started): show what Ray said
            self._send("".join(self._held))
        self._held = None

    def _send(self, text: str) -> None:
        if text:
            self._write(text)
            self._sent += len(text)


def list_jobs(conn: Connection, *, every: bool = False) -> list[dict[str, Any]]:
    """Submitted sweeps (every job with ``every``), newest first."""
    with _translated(conn.address):
        details = conn.client.list_jobs()
    rows = []
    for job in details:
        meta = job.metadata or {}
        if not every and meta.get(JobMeta.KIND) != "sweep":
            continue
        rows.append(
            {
                "job_id": job.submission_id or job.job_id,
                "status": job.status.value,
                "study": meta.get(JobMeta.STUDY, ""),
                "spec": meta.get(JobMeta.SPEC, ""),
                "start_time": (job.start_time or 0) / 1000,
                "end_time": (job.end_time or 0) / 1000 or None,
                "message": job.message or "",
            }
        )
    return sorted(rows, key=lambda r: r["start_time"], reverse=True)


def job_logs(conn: Connection, job_id: str) -> str:
    """The job's log so far."""
    with _translated(conn.address):
        _job_exists(conn, job_id)
        return _user_log(conn.client.get_job_logs(job_id))


def job_status(conn: Connection, job_id: str) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    with _translated(conn.address):
        _job_exists(conn, job_id)
        return str(conn.client.get_job_status(job_id).value)


def stop_job(conn: Connection, job_id: str) -> bool:
    """Ask the job to stop (its sweep closes its runs as after Ctrl-C); False if it had ended."""
    with _translated(conn.address):
        _job_exists(conn, job_id)
        return bool(conn.client.stop_job(job_id))


def run_on_head(
    conn: Connection, args: Sequence[str], *, stores: Mapping[str, str] | None = None
) -> str:
    """Run ``orch ARGS`` on the head as a short job, then delete it; return its output.

    ``stores`` (``storage``/``tracking_uri`` URLs, which may hold a password) reach the head
    in a stores file of the job's working dir, as for ``orch submit``: never on its command
    line, nor in its ``runtime_env`` (which Ray logs).

    Raises:
        ClusterError: the command failed on the head (with the last line it printed).
    """
    command = " ".join(
        [shlex.quote(head_python(conn)), "-c", shlex.quote(_ORCH), *map(shlex.quote, args)]
    )
    with tempfile.TemporaryDirectory(prefix="orch-query-") as scratch:
        runtime_env: dict[str, Any] = {"env_vars": {"COLUMNS": "120"}}
        if stores:
            write_secret(Path(scratch) / STORES_FILE, json.dumps(dict(stores)))
            runtime_env = {
                "working_dir": scratch,
                "env_vars": {"COLUMNS": "120", STORES_FILE_ENV: STORES_FILE},
            }
        status, logs = _run_job(conn, command, kind="query", runtime_env=runtime_env)
    if status != "SUCCEEDED":
        lines = [line for line in logs.splitlines() if line.strip()]
        raise ClusterError(f"on the head: {lines[-1] if lines else 'no output'}")
    return logs


def _run_job(
    conn: Connection,
    entrypoint: str,
    *,
    kind: str,
    runtime_env: dict[str, Any] | None = None,
    timeout_s: float = 120,
) -> tuple[str, str]:
    """Run a short job without a working dir, wait, delete it; return (status, output)."""
    with _translated(conn.address):
        job_id = conn.client.submit_job(
            entrypoint=entrypoint,
            submission_id=f"orch-{kind}-{secrets.token_hex(4)}",
            runtime_env=runtime_env or {"env_vars": {"COLUMNS": "120"}},
            metadata={JobMeta.KIND: kind},
        )
        try:
            deadline = time.monotonic() + timeout_s
            status = conn.client.get_job_status(job_id).value
            while status not in _TERMINAL and time.monotonic() < deadline:
                time.sleep(0.5)
                status = conn.client.get_job_status(job_id).value
            logs = _user_log(conn.client.get_job_logs(job_id))
        finally:
            if conn.client.get_job_status(job_id).value not in _TERMINAL:
                conn.client.stop_job(job_id)
            _forget(conn, job_id)
    return status, logs


def _forget(conn: Connection, job_id: str) -> None:
    """Delete an ended job once Ray's job monitor is done with it.

    Deleted while its supervisor actor still lives, the monitor would record the job again
    as FAILED ("supervisor actor died"): wait for the actor's end and one monitor period.
    """
    name = f"_ray_internal_job_actor_{job_id}"
    endpoint = (
        "/api/v0/actors?filter_keys=name&filter_predicates=%3D"
        f"&filter_values={name}&detail=0&limit=10"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = conn.client.get_job_status(job_id).value
        actors = conn.get(endpoint)["data"]["result"]["result"]
        if status in _TERMINAL and all(a.get("state") == "DEAD" for a in actors):
            break
        time.sleep(0.5)
    # The monitor may still record it again after the delete (the actor's end reaching it
    # late, seen on a quiet machine): delete until it stays deleted for a monitor period.
    for _ in range(_FORGET_TRIES):
        time.sleep(_MONITOR_PERIOD_S)
        try:
            conn.client.delete_job(job_id)
        except RuntimeError as exc:
            if not _missing(exc):
                raise
        time.sleep(_MONITOR_PERIOD_S)
        if not _listed(conn, job_id):
            return


def _listed(conn: Connection, job_id: str) -> bool:
    """Whether Ray lists the job."""
    try:
        conn.client.get_job_info(job_id)
    except RuntimeError as exc:
        if _missing(exc):
            return False
        raise
    return True


def _missing(exc: RuntimeError) -> bool:
    """Whether Ray's job client raised ``exc`` because the job does not exist."""
    return "404" in str(exc) or "does not exist" in str(exc)


def _job_exists(conn: Connection, job_id: str) -> None:
    if not _listed(conn, job_id):
        raise ClusterError(f"no job {job_id!r} on {conn.address} (orch jobs lists them)")


def _user_log(text: str) -> str:
    """The job's log without Ray's lines about setting it up."""
    lines = text.splitlines(keepends=True)
    start = 0
    for index, line in enumerate(lines):
        if line.startswith(_ENTRYPOINT_LINE):
            start = index + 1
            break
    return "".join(lines[start:])


# Small helpers -------------------------------------------------------------------------------


def _quiet_ray() -> None:
    """Ray's packaging and job client log each upload (and its size); orch says both itself.

    Called after ``import ray``, whose logging setup resets the levels of its loggers.
    """
    for name in ("ray._private.runtime_env.packaging", "ray.dashboard.modules.dashboard_sdk"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _worker_python(cmdline: Sequence[str]) -> str | None:
    for part in cmdline:
        if part.startswith("--python_worker_command="):
            words = part.split("=", 1)[1].split()
            return words[0] if words else None
    return None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
