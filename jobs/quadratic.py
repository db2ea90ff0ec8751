"""A fast toy job: a noisy quadratic bowl, 'trained' for a few epochs. Seconds per sweep."""

from __future__ import annotations

import math
import random
from typing import Any

from orchestrator import Trial


def run(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Minimise (x - 2)^2 + (y + 1)^2 (+ a shape term); the loss shrinks over ``epochs``."""
    x, y = float(params["x"]), float(params.get("y", 0.0))
    shape = {"bowl": 0.0, "ridge": 0.5, "saddle": 1.0}[params.get("shape", "bowl")]
    rng = random.Random(params.get("seed", 0))
    target = (x - 2.0) ** 2 + (y + 1.0) ** 2 + shape
    loss = target + 1.0
    for epoch in range(int(params.get("epochs", 5))):
        loss = target + math.exp(-epoch) + 0.01 * rng.random()
        trial.report(epoch, loss=loss, x_sq=x * x)
    return {"loss": loss, "distance": math.hypot(x - 2.0, y + 1.0)}
