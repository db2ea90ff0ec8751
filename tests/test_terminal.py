"""`orch sweep` on a pseudo-terminal, as a person sees it: what the progress display says while
the sweep starts, nothing from Ray or the job on screen, and the few lines (and exit status 3)
when the local Ray dies mid-sweep."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from optuna.trial import TrialState

from tests.helpers import load, runs, runs_so_far, study_so_far

REPO = Path(__file__).resolve().parent.parent
ORCH = str(Path(sys.executable).with_name("orch"))
#: Cursor moves, colours and the like: what a terminal acts on rather than shows.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A command run on a pseudo-terminal 80 columns wide, its screen output collected."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        main, side = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80", "TERM": "xterm"}
        env.pop("RAY_ADDRESS", None)
        self.process = subprocess.Popen(
            argv, cwd=cwd, stdin=side, stdout=side, stderr=side, env=env, start_new_session=True
        )
        os.close(side)
        self._main = main
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._main, 65536)
            except OSError:  # EIO: the command and its children closed the terminal
                return
            if not data:
                return
            self._chunks.append(data)

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=30)
        os.close(self._main)
        return code

    @property
    def raw(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def lines(self) -> list[str]:
        """What stays on screen, line by line: each line as its last redraw left it."""
        text = ESCAPES.sub("", self.raw).replace("\r\n", "\n")
        return [line.split("\r")[-1].rstrip() for line in text.split("\n") if line.strip()]


def _spec(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nobjective: {{metric: loss}}\nsampler: {{type: random, seed: 0}}\n"
        "space: {x: {type: float, low: 0, high: 1}}\n" + body
    )
    return path


def test_healthy_sweep_says_what_it_starts_and_shows_nothing_from_ray_or_the_job(tmp_path):
    spec = _spec(
        tmp_path,
        "loud",
        "job: tests.jobs_for_tests:by_mode\ntrials: 4\nparallel: 2\nfixed: {mode: artifact}\n",
    )
    term = Terminal([ORCH, "sweep", str(spec), "--workspace", str(tmp_path / "ws")], REPO)
    assert term.wait(timeout=300) == 0, term.raw[-3000:]
    raw = ESCAPES.sub("", term.raw)
    for phase in ("starting Ray…", "starting the study hub and tracker…", "closing the study…"):
        assert phase in raw  # the bar said what the sweep was waiting for
    assert "printed by the job" not in raw  # the job's prints stay in its run's output.log
    for ray_text in ("(pid=", "raylet", "WARNING", "Traceback", "INFO ", "token"):
        assert ray_text not in raw, raw[-3000:]
    screen = term.lines()
    bar = [line for line in screen if line.startswith("loud ")]
    assert bar and all(len(line) <= 80 for line in bar), screen  # the bar fits 80 columns
    assert any(line.startswith("loud: complete 4") for line in screen), screen
    logs = sorted(p.name for p in (tmp_path / "ws" / "logs").iterdir())
    assert [n.split("-")[0] for n in logs] == ["ray", "report"], logs  # Ray's log went there
    assert not any("Ray's log" in line for line in screen)  # named only when something failed
    _, children = runs(tmp_path / "ws", "loud")
    assert len(children) == 4


def _ray_processes(pid: int) -> list[psutil.Process]:
    """The processes the sweep's local Ray runs: every descendant of the ``orch`` process."""
    return psutil.Process(pid).children(recursive=True)


@pytest.mark.slow
def test_local_ray_killed_mid_sweep_closes_everything_and_prints_the_resume_command(tmp_path):
    spec = _spec(
        tmp_path,
        "doomed",
        "job: tests.jobs_for_tests:sleepy\ntrials: 4\nparallel: 2\nfixed: {seconds: 120}\n",
    )
    argv = [ORCH, "sweep", str(spec), "--workspace", str(tmp_path / "ws"), "--set", "trials=4"]
    term = Terminal(argv, REPO)
    deadline = time.time() + 180
    while time.time() < deadline:
        assert term.process.poll() is None, term.raw[-3000:]
        study = study_so_far(tmp_path / "ws", "doomed")
        found = runs_so_far(tmp_path / "ws", "doomed")  # the tracker opens runs a bit later
        running = found and [r for r in found[1] if r.info.status == "RUNNING"]
        if study and len(study.get_trials(states=(TrialState.RUNNING,))) == 2 and running:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"trials never started:\n{term.raw[-3000:]}")
    killed_at = time.time()
    for process in _ray_processes(term.process.pid):  # the local Ray dies; orch itself lives
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    code = term.wait(timeout=120)
    noticed = time.time() - killed_at
    screen = term.lines()
    print("\n".join(screen))  # what a person saw (pytest -s shows it)
    assert code == 3, screen
    assert noticed < 60, noticed  # noticed within 30 s, then closed the stores
    raw = ESCAPES.sub("", term.raw)
    assert "Traceback" not in raw and "Exception" not in raw, raw[-3000:]
    said = [line for line in screen if not line.startswith("doomed ")]  # all but the bar
    assert said[0].startswith("error: lost the local Ray mid-sweep"), screen
    assert len(said) <= 5, screen  # a few lines, not Ray's log dump
    resume = [line for line in screen if line.startswith("continue with: ")]
    assert resume, screen
    command = shlex.split(resume[0].removeprefix("continue with: "))
    assert command == ["orch", *argv[1:], "--resume"]  # the user's own arguments

    study = load(tmp_path / "ws", "doomed")
    assert not study.get_trials(states=(TrialState.RUNNING,))  # re-queued as after Ctrl-C
    lost = {t.number: t.params for t in study.get_trials(states=(TrialState.FAIL,))}
    assert len(lost) == 2 and len(study.get_trials(states=(TrialState.WAITING,))) == 2
    parent, children = runs(tmp_path / "ws", "doomed")
    assert parent.info.status != "RUNNING"
    assert children and all(r.info.status != "RUNNING" for r in children)

    done = subprocess.run(
        [ORCH, *command[1:], "--set", "fixed.seconds=0", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
            "PYTHONPATH": str(REPO),
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path / "ws", "doomed")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == 4  # no parameter set completed twice
    reruns = {
        t.user_attrs["orch.rerun_of"]: t.params for t in complete if "orch.rerun_of" in t.user_attrs
    }
    assert reruns == lost
