"""A job that does (almost) nothing: measures what orchestration itself costs per trial."""

from __future__ import annotations

import time
from typing import Any

from orchestrator import Trial


def run(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Optionally sleep ``sleep_s`` and report ``reports`` steps; return a quadratic loss."""
    loss = (float(params["x"]) - 1.0) ** 2 + (float(params["y"]) + 2.0) ** 2
    for step in range(int(params.get("reports", 0))):
        trial.report(step, loss=loss + 1.0 / (step + 1))
    if params.get("sleep_s"):
        time.sleep(float(params["sleep_s"]))
    return {"loss": loss}
