"""The MLflow tracker against a real sqlite tracking store, without Ray."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow import MlflowClient

from orchestrator.tracking import Tracker


def _tracker(tmp_path: Path) -> tuple[Tracker, MlflowClient]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # The flusher waits a minute: writes happen only when the test makes them.
    tracker = Tracker(tracking_uri=uri, experiment="t", flush_interval_s=60)
    tracker.start_parent(name="parent", spec_yaml="name: t\n", tags={})
    return tracker, MlflowClient(uri)


def test_params_ride_with_the_first_tags_in_one_write(tmp_path: Path) -> None:
    tracker, client = _tracker(tmp_path)
    writes = tracker.stats().get("_write", {}).get("calls", 0)
    run_id = tracker.start_trial("0.0", run_name="t0", params={"lr": 0.1}, tags={})
    tracker.set_tags("0.0", {"orch.node": "n1"})
    assert tracker.stats()["_write"]["calls"] == writes + 1
    run = client.get_run(run_id)
    assert run.data.params == {"lr": "0.1"} and run.data.tags["orch.node"] == "n1"
    tracker.end_trial("0.0", state="COMPLETE", metrics={"loss": 1.0}, tags={})
    assert client.get_run(run_id).data.params == {"lr": "0.1"}
    assert tracker.close() == []


def test_params_of_a_quiet_trial_are_written_by_the_flusher(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(tracking_uri=uri, experiment="t", flush_interval_s=0.1, params_wait_s=0.3)
    client = MlflowClient(uri)
    run_id = tracker.start_trial("0.0", run_name="t0", params={"depth": 3}, tags={})
    deadline = time.monotonic() + 20
    while not client.get_run(run_id).data.params and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get_run(run_id).data.params == {"depth": "3"}
    tracker.end_trial("0.0", state="FAIL", metrics={}, tags={})
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.params == {"depth": "3"}
    assert tracker.close() == []


def test_with_mlflow_down_the_tracker_holds_a_bounded_queue_and_says_so(
    tmp_path: Path, monkeypatch
) -> None:
    """A real MLflow server that goes away mid-sweep: metrics wait in a bounded queue, the
    excess is dropped and counted, and the problems come back as a few clear lines (the
    server's URL masked), not one per flush."""
    from orchestrator.results import start_mlflow_ui

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").search_experiments()  # creates the store
    server = start_mlflow_ui(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", port=0)
    uri = server.url.replace("http://", "http://admin:s3cret-pw@")
    tracker = Tracker(tracking_uri=uri, experiment="t", flush_interval_s=0.1, max_pending=50)
    tracker.start_trial("0.0", run_name="t0", params={}, tags={})
    tracker.log_metrics("0.0", 0, {"loss": 1.0}, 0)
    tracker.flush()
    server.stop()
    for step in range(1, 201):
        tracker.log_metrics("0.0", step, {"loss": 1.0 / step}, step)
    time.sleep(1.5)  # flushes fail meanwhile
    problems = tracker.close()
    assert "s3cret-pw" not in "\n".join(problems)
    where = server.url.replace("http://", "http://admin:***@")
    assert f"150 metrics dropped: MLflow at {where} did not take them" in problems[-2]
    assert problems[-1] == f"50 metrics not written: MLflow at {where} did not take them"
    failed = [line for line in problems if line.startswith(f"MLflow at {where} did not take")]
    assert len(failed) == 1 and "times)" in failed[0]
    assert len(problems) <= 4, problems
