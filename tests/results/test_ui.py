"""``orch ui``: the MLflow UI of a finished sweep in a real headless Chromium; optuna-dashboard."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator._net import free_port
from orchestrator.results import start_optuna_dashboard
from tests.conftest import REPO
from tests.results.conftest import ENV, ORCH
from tests.results.test_compare_replay import assert_png

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)


def _wait_for(lines: queue.Queue, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"no line matching {pattern!r} within {timeout}s; got {seen}")


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@pytest.mark.slow
def test_mlflow_ui_lists_the_sweep_and_its_trials_in_chromium(finished, tmp_path):
    from playwright.sync_api import sync_playwright  # a dev dependency: fail loudly if missing

    assert CHROMIUM.exists(), "install Debian's chromium: apt-get install -y chromium"
    port = free_port()
    ui = subprocess.Popen(
        [*ORCH, "ui", "--port", str(port), "--workspace", str(finished.workspace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=ENV,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(ui.stdout, lines), daemon=True).start()
    server_pid = None
    try:
        url = _wait_for(lines, r"MLflow UI: (http://\S+)", timeout=180).group(1)
        assert url == f"http://127.0.0.1:{port}"
        server_pid = int(_wait_for(lines, r"\(pid (\d+),", timeout=10).group(1))

        parent = finished.result.parent_run_id
        with urllib.request.urlopen(f"{url}/get-artifact?path=spec.yaml&run_uuid={parent}") as r:
            assert b"jobs.quadratic:run" in r.read()  # artifacts are served too

        experiment = MlflowClient(finished.tracking_uri).get_experiment_by_name("results")
        page_url = (
            f"{url}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
        )
        shot = Path(os.environ.get("ORCH_ARTIFACTS_DIR") or tmp_path) / "mlflow-ui-runs.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(page_url, timeout=120_000)
                # The React app draws the parent row; its expander shows the child runs.
                row = page.locator(f"[role=row][row-id='{parent}']")
                expand = row.locator("button[data-component-id*='runnamecellrenderer']")
                expand.wait_for(timeout=120_000)
                assert "results" in row.first.inner_text()
                expand.click()
                client = MlflowClient(finished.tracking_uri)
                for trial in finished.study.trials:  # named "#7 x=1.46 shape=ridge" and so on
                    name = client.get_run(trial.user_attrs["mlflow_run_id"]).info.run_name
                    assert name.startswith(f"#{trial.number} ")
                    page.get_by_text(name, exact=True).wait_for(timeout=60_000)
                page.screenshot(path=str(shot))
            finally:
                browser.close()
        assert_png(shot)
        # SIGTERM, as a closed terminal or `kill` sends: orch stops the server and exits 0.
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 0
        with pytest.raises(ProcessLookupError):
            os.killpg(server_pid, 0)
    finally:
        _kill_group(ui.pid)
        if server_pid is not None:
            _kill_group(server_pid)
        ui.wait(timeout=30)


def test_ui_optuna_serves_the_study_storage(finished):
    with start_optuna_dashboard(storage_url=finished.storage, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{server.url}/api/studies", timeout=30) as response:
            studies = json.loads(response.read())["study_summaries"]
        assert [s["study_name"] for s in studies] == ["results"]
    assert server.process.poll() is not None  # stopped with its process group


def test_ui_of_an_unknown_study_is_a_one_line_error_before_anything_starts(finished, orch):
    done = orch("ui", "nope", "--port", "0", "--workspace", str(finished.workspace))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ui: no study 'nope' in sqlite:///")
    assert len(done.stderr.strip().splitlines()) == 1


def test_ui_refuses_a_busy_port_in_one_line(finished, orch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = orch("ui", "--port", str(port), "--workspace", str(finished.workspace))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: ui: cannot listen on 127.0.0.1:{port}")
    assert len(done.stderr.strip().splitlines()) == 1


def _mlflow_metric_text(value: float) -> str:
    """A metric as MLflow's web app shows it (``Utils.formatMetric`` of MLflow 3)."""
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent):+d}"
    digits = 3 if abs(value) < 10 else 2 if abs(value) < 100 else 1
    return f"{round(value, digits):.{digits}f}".rstrip("0").rstrip(".")


@pytest.mark.slow
def test_the_compare_link_orch_best_prints_shows_the_best_trials_side_by_side(finished, tmp_path):
    from playwright.sync_api import sync_playwright

    port = free_port()
    ui = subprocess.Popen(
        [*ORCH, "ui", "results", "--port", str(port), "--workspace", str(finished.workspace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=ENV,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(ui.stdout, lines), daemon=True).start()
    server_pid = None
    try:
        url = _wait_for(lines, r"MLflow UI: (http://\S+)", timeout=180).group(1)
        experiment = MlflowClient(finished.tracking_uri).get_experiment_by_name("results")
        study_page = _wait_for(lines, r"^  results: (http://\S+)$", timeout=10).group(1)
        server_pid = int(_wait_for(lines, r"\(pid (\d+),", timeout=10).group(1))
        assert study_page == (
            f"{url}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
        )
        best = subprocess.run(
            [*ORCH, "best", "results", "--top", "3", "--ui-url", url],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**ENV, "ORCH_WORKSPACE": str(finished.workspace)},
            check=True,
        ).stdout
        compare = re.search(r"^  compare +(http://\S+)$", best, re.MULTILINE).group(1)
        runs = dict(re.findall(r"^  #(\d+) +(http://\S+)$", best, re.MULTILINE))
        ranked = sorted(
            (t for t in finished.study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value
        )[:3]
        assert sorted(runs) == sorted(str(t.number) for t in ranked)
        run_ids = [t.user_attrs["mlflow_run_id"] for t in ranked]
        params = [MlflowClient(finished.tracking_uri).get_run(r).data.params for r in run_ids]
        differing = {k for k in params[0] if len({p.get(k) for p in params}) > 1}
        assert "seed" in params[0] and "seed" not in differing  # the fixed param: same in all
        shot = Path(os.environ.get("ORCH_ARTIFACTS_DIR") or tmp_path) / "mlflow-compare.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1200})
                page.goto(compare, timeout=120_000)
                page.get_by_text("Comparing 3 Runs").wait_for(timeout=120_000)
                page.get_by_text("Show diff only").first.wait_for(timeout=60_000)
                text = page.inner_text("body")
                for trial, run_params in zip(ranked, params, strict=True):
                    name = MlflowClient(finished.tracking_uri).get_run(
                        trial.user_attrs["mlflow_run_id"]
                    )
                    assert name.info.run_name in text  # "#7 x=1.46 ..." heads its column
                    assert _mlflow_metric_text(trial.value) in text  # the objective, loss
                    for key in differing:
                        assert run_params[key] in text, (key, run_params[key])
                page.screenshot(path=str(shot), full_page=True)
                number, link = next(iter(runs.items()))  # a run's own link opens that run
                page.goto(link, timeout=120_000)
                page.get_by_text(f"#{number} ").first.wait_for(timeout=120_000)
                assert page.url.endswith(link.rsplit("/", 1)[1])
            finally:
                browser.close()
        assert_png(shot)
    finally:
        ui.send_signal(signal.SIGTERM)  # orch ui stops its server
        with suppress(subprocess.TimeoutExpired):
            ui.wait(timeout=60)
        _kill_group(ui.pid)
        if server_pid is not None:
            _kill_group(server_pid)
        ui.wait(timeout=30)


def _serving(port: int) -> list[str]:
    """Live processes with ``--port PORT`` on their command line (the UI server and workers)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        words = [w.decode(errors="replace") for w in command]
        if state != "Z" and any(
            w == f"--port={port}" or (w == "--port" and nxt == str(port))
            for w, nxt in zip(words, [*words[1:], ""], strict=True)
        ):
            found.append(f"{entry}: {' '.join(words)[:150]}")
    return found


def _gone_within(port: int, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _serving(port):
            return []
        time.sleep(0.25)
    return _serving(port)


@pytest.mark.parametrize("how", ["sigkill once it answers", "sigterm once it answers"])
def test_the_ui_server_never_outlives_orch_ui(finished, how):
    """Killed (SIGKILL: no handler runs) or stopped while it builds its links, orch ui takes
    the MLflow server with it: nothing keeps the port."""
    port = free_port()
    ui = subprocess.Popen(
        [*ORCH, "ui", "--port", str(port), "--workspace", str(finished.workspace)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=ENV,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not _answers(port):
            assert ui.poll() is None and time.monotonic() < deadline, "the UI did not start"
            time.sleep(0.1)
        assert _serving(port)
        # At once: orch ui is still building the experiment links (seconds).
        ui.send_signal(signal.SIGKILL if how.startswith("sigkill") else signal.SIGTERM)
        ui.wait(timeout=60)
        assert _gone_within(port, 30) == []
        assert not _answers(port)
    finally:
        _kill_group(ui.pid)
        ui.wait(timeout=30)


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_no_store_url_on_a_ui_server_command_line(finished):
    """Store URLs (and any password in them) reach the servers by environment or a user-only
    file: /proc/PID/cmdline is readable by every user of the machine."""
    from orchestrator.results import start_mlflow_ui

    for server in (
        start_optuna_dashboard(storage_url=finished.storage, port=0),
        start_mlflow_ui(tracking_uri=finished.tracking_uri, port=0),
    ):
        with server:
            port = int(server.url.rsplit(":", 1)[1])
            commands = _serving(port)
            assert commands
            for command in commands:
                assert "sqlite" not in command
                assert finished.storage not in command and finished.tracking_uri not in command
            if server.config_path is not None:
                assert server.config_path.stat().st_mode & 0o077 == 0
        assert _gone_within(port, 30) == []
