"""The sweep entry point ``jobs.deq.evaluate:run``: test a trained checkpoint with another solver.

Loads ``model.pt`` written by ``jobs.deq.train:run`` (a path, or an MLflow URI such as
``runs:/<run_id>/model.pt``), swaps in the swept solver, memory and tolerance, and measures test
accuracy, NFE, residuals and the spectral radius without retraining.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from jobs.deq.checkpoint import load_checkpoint, resolve_checkpoint
from jobs.deq.data import load_dataset
from jobs.deq.diagnostics import finite_or, peak_memory_mb, reset_peak_memory
from jobs.deq.engine import SolverDiverged, evaluate
from jobs.deq.models import build_model
from jobs.deq.params import EvalConfig, TrainConfig, parse_params
from jobs.deq.train import seed_everything
from orchestrator import Trial, TrialDiverged

__all__ = ["run"]


def run(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Evaluate ``params["checkpoint"]`` with the given solver settings; one report at step 0."""
    cfg = parse_params(params, EvalConfig)
    seed_everything(cfg.seed)
    device = trial.device
    saved = load_checkpoint(resolve_checkpoint(cfg.checkpoint, trial.workdir))
    train_cfg = parse_params(saved["config"], TrainConfig)
    data = load_dataset(train_cfg.dataset, samples=train_cfg.samples, size=train_cfg.image_size)
    data = data.to(device)
    deq = dataclasses.replace(
        train_cfg.deq_config(), solver=cfg.solver, forward=cfg.solver_options()
    )
    model = build_model(train_cfg.model_spec(data.in_shape, data.classes), deq)
    model.load_state_dict(saved["state_dict"])
    model.to(device)
    trial.set_tag("deq.checkpoint", cfg.checkpoint)
    trial.set_tag("deq.trained_with", f"{train_cfg.model}/{train_cfg.solver}/{train_cfg.grad}")
    reset_peak_memory(device)
    start = time.perf_counter()
    try:
        for _ in range(cfg.epochs):
            metrics = evaluate(
                model,
                data.x_test,
                data.y_test,
                batch_size=cfg.batch_size,
                spectral_iters=cfg.spectral_iters,
                default_nfe=train_cfg.nmf_steps,
                where="test-time evaluation",
            )
    except SolverDiverged as err:
        raise TrialDiverged(f"{cfg.solver}: {err}") from err
    metrics["eval_time_s"] = (time.perf_counter() - start) / cfg.epochs
    metrics["peak_memory_mb"] = peak_memory_mb(device)
    metrics["spectral_radius"] = finite_or(metrics["spectral_radius"], 1e6)
    metrics["spectral_radius_max"] = finite_or(metrics["spectral_radius_max"], 1e6)
    trial.report(0, **metrics)
    return {name: float(value) for name, value in metrics.items()}
