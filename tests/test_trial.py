"""The Trial API jobs see, run by hand with local_trial, and the worker's output log."""

from __future__ import annotations

import pytest

from jobs.quadratic import run as quadratic
from orchestrator import local_trial
from orchestrator.engine import OutputLog
from orchestrator.errors import StoreUnavailable
from orchestrator.trial import LocalSink, Trial, call_job, from_result


def test_local_trial_records_reports_artifacts_and_tags(tmp_path):
    trial = local_trial({"x": 2.0, "y": -1.0, "epochs": 3}, artifact_dir=tmp_path)
    result = quadratic(dict(trial.params), trial)
    assert [step for step, _ in trial.sink.reports] == [0, 1, 2]
    assert trial.sink.history("loss")[-1] == (2, pytest.approx(result["loss"]))
    note = trial.workdir / "note.txt"
    note.write_text("hi")
    trial.log_artifact(note, name="notes/n.txt")
    trial.set_tag("dataset", "digits")
    assert (tmp_path / "notes" / "n.txt").read_text() == "hi"
    assert trial.sink.tags == {"dataset": "digits"}
    assert trial.device.type in ("cpu", "cuda")
    workdir = trial.workdir
    trial.close()
    assert not workdir.exists()


@pytest.mark.parametrize(
    ("step", "metrics", "error"),
    [
        (-1, {"loss": 1.0}, "non-negative int"),
        (1.5, {"loss": 1.0}, "non-negative int"),
        (True, {"loss": 1.0}, "non-negative int"),
        (0, {}, "at least one metric"),
        (0, {"loss": "high"}, "metric 'loss' must be a number"),
    ],
)
def test_report_rejects_bad_input(step, metrics, error):
    trial = local_trial()
    with pytest.raises((ValueError, TypeError), match=error):
        trial.report(step, **metrics)


def test_log_artifact_needs_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        local_trial().log_artifact(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    ("result", "state", "reason"),
    [
        ({"loss": 1, "acc": 0.5}, "COMPLETE", None),
        ({"loss": float("inf")}, "FAIL", "objective metric 'loss' is inf"),
        ({"loss": "x"}, "FAIL", "metric 'loss' is not a number: 'x'"),
        ({"acc": 1.0}, "FAIL", "objective metric 'loss' missing from the result (got acc)"),
        (None, "FAIL", "job returned NoneType, expected a dict"),
    ],
)
def test_results_are_read_strictly(result, state, reason):
    outcome = from_result(result, ["loss"])
    assert (outcome.state, outcome.reason) == (state, reason)
    if state == "COMPLETE":
        assert outcome.values == [1.0] and outcome.metrics == {"loss": 1.0, "acc": 0.5}


def test_output_log_keeps_the_end_of_long_output():
    log = OutputLog(limit=10)
    for i in range(20):
        log.write(f"{i}\n")
    assert log.text().startswith("[... 41 characters dropped ...]\n")
    assert log.text().endswith("17\n18\n19\n")


def test_log_artifact_streams_a_large_file_in_parts(tmp_path):
    """A 40 MB file reaches the sink in parts, whole and in order, and is never read whole
    (the peak of Python's allocations stays under half the file)."""
    import hashlib
    import tracemalloc

    big = tmp_path / "weights.bin"
    with big.open("wb") as file:
        for i in range(40):
            file.write(bytes([i]) * 1_000_000)
    trial = local_trial(artifact_dir=tmp_path / "stored")
    tracemalloc.start()
    try:
        trial.log_artifact(big, name="model/weights.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, peak
    stored = tmp_path / "stored" / "model" / "weights.bin"
    digest = hashlib.sha256
    assert digest(stored.read_bytes()).digest() == digest(big.read_bytes()).digest()


class UnreachableSink(LocalSink):
    """The sweep's hub when its database stayed unreachable past ``store_timeout_s``."""

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        raise StoreUnavailable("the study database sqlite:///x.db unreachable for 8s")


def test_a_report_the_hub_cannot_store_stops_the_sweep_not_the_trial(tmp_path):
    """The job's own errors end the trial FAIL; a report the database could not take is the
    sweep's error, raised on: the trial stays RUNNING and --resume runs it again."""
    trial = Trial(number=0, params={}, sink=UnreachableSink(tmp_path))
    with pytest.raises(StoreUnavailable, match="unreachable"):
        call_job(lambda params, trial: trial.report(0, loss=1.0), trial, ["loss"])
    failed = call_job(lambda params, trial: 1 / 0, trial, ["loss"])
    assert failed.state == "FAIL" and "ZeroDivisionError" in failed.reason
