"""Jobs that exercise the orchestrator's contract: failures, pruning, reports, artifacts."""

from __future__ import annotations

import math
import os
import signal
import time
from typing import Any

from orchestrator import Trial, TrialDiverged


def steps(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Report ``n_steps`` values of loss = x + 1/(step+1); return the last."""
    x = float(params["x"])
    loss = x
    for step in range(int(params.get("n_steps", 5))):
        loss = x + 1.0 / (step + 1)
        trial.report(step, loss=loss, step_sq=float(step * step))
        time.sleep(float(params.get("sleep", 0.0)))
    return {"loss": loss, "x": x}


def by_mode(params: dict[str, Any], trial: Trial) -> dict[str, Any]:
    """Behave as ``params['mode']`` says: ok, raise, nan, missing, not_dict, diverge, artifact."""
    mode = params["mode"]
    trial.report(0, loss=1.0)
    if mode == "raise":
        raise RuntimeError("boom from the job")
    if mode == "nan":
        return {"loss": math.nan}
    if mode == "missing":
        return {"other": 1.0}
    if mode == "not_dict":
        return [1.0]  # type: ignore[return-value]
    if mode == "diverge":
        raise TrialDiverged("residual exploded to inf")
    if mode == "artifact":
        path = trial.workdir / "notes.txt"
        path.write_text("hello from the trial")
        trial.log_artifact(path)
        print("printed by the job")
    return {"loss": float(params.get("x", 0.5))}


def sleepy(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Report once, then sleep ``seconds`` (for timeouts and Ctrl-C)."""
    trial.report(0, loss=1.0)
    time.sleep(float(params.get("seconds", 60)))
    return {"loss": float(params.get("x", 0.0))}


def crash_first_attempt(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """SIGKILL its own worker process on attempt 0: a real worker death, then succeed."""
    trial.report(0, loss=1.0)
    if trial.attempt == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"loss": float(params["x"]), "attempt": float(trial.attempt)}


def curve(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Report the residuals listed in ``params['curve']`` ("1,4,8"), one per step, with
    loss = residual + x; return the last loss and a cost that grows with the steps run."""
    x = float(params.get("x", 0.0))
    loss = x
    residuals = [float(r) for r in str(params["curve"]).split(",")]
    for step, residual in enumerate(residuals):
        loss = residual + x
        trial.report(step, loss=loss, residual=residual)
    return {"loss": loss, "cost": float(len(residuals))}


def two_objectives(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """A trade-off: error falls and cost rises with x."""
    x = float(params["x"])
    return {"error": (1.0 - x) ** 2, "cost": x * x}


def where(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Tag the test node this attempt runs on, sleep, and return what devices it saw."""
    trial.set_tag("test_node", os.environ.get("ORCH_TEST_NODE", "none"))
    trial.report(0, loss=1.0)
    time.sleep(float(params.get("seconds", 1.0)))
    visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
    return {
        "loss": float(params["x"]),
        "visible_gpus": float(len(visible)),
        "device_is_cpu": float(trial.device.type == "cpu"),
    }


def block_report(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Succeed, after putting a file where the sweep's report folder goes on its parent run
    (a real failure of the end-of-sweep report, even for root)."""
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    client = MlflowClient()  # MLFLOW_TRACKING_URI: the sweep's store
    experiment = client.get_experiment_by_name(str(params["study"]))
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    folder = urlparse(parent.info.artifact_uri).path
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "report"), "w") as blocker:
        blocker.write("a file where the report folder goes\n")
    return {"loss": float(params.get("x", 0.5))}


def kill_hub(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Trial 1 kills the sweep's study hub actor (a lost hub), then waits to be cancelled."""
    import ray

    trial.report(0, loss=1.0)
    if trial.number == 1:
        ray.kill(trial.sink._hub, no_restart=True)  # type: ignore[attr-defined]
        time.sleep(120)
    return {"loss": float(params.get("x", 0.5))}


def exit_hard(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Print, report, then end the worker process at once (as a segfault or OOM kill would)."""
    print("printed before the crash", flush=True)
    trial.report(0, loss=1.0)
    time.sleep(2.5)
    os._exit(1)


def big_artifact(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Log a file larger than one artifact part (it travels in two)."""
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"orch-big-{os.getpid()}.bin")
    with open(path, "wb") as file:
        for i in range(9):
            file.write(bytes([i + 1]) * 1_048_576)
    try:
        trial.log_artifact(path, name="big/blob.bin")
    finally:
        os.remove(path)
    return {"loss": 0.0}
