"""The sweep entry point ``jobs.deq.train:run``: train a DEQ / Hamburger image classifier."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from jobs.deq.checkpoint import save_checkpoint
from jobs.deq.data import load_dataset
from jobs.deq.diagnostics import finite_or, peak_memory_mb, reset_peak_memory, weight_norm_max
from jobs.deq.engine import SolverDiverged, evaluate, train_epoch
from jobs.deq.models import DEQClassifier, build_model, count_parameters
from jobs.deq.params import TrainConfig, parse_params
from jobs.deq.plots import plot_traces
from jobs.deq.solvers import solve_with, solver_names
from orchestrator import Trial, TrialDiverged

__all__ = ["run"]

RETURNED = (
    "train_loss",
    "test_accuracy",
    "test_error",
    "nfe_forward",
    "nfe_forward_max",
    "nfe_backward",
    "nfe_backward_max",
    "residual",
    "residual_max",
    "converged_fraction",
    "spectral_radius",
    "spectral_radius_max",
    "epoch_time_s",
    "peak_memory_mb",
    "weight_norm_max",
)


def run(params: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Train with ``params`` (see :class:`jobs.deq.params.TrainConfig`); return the last epoch's
    metrics. Reports every epoch; logs ``model.pt`` and ``residual_trace.png``.

    Raises :class:`orchestrator.TrialDiverged` when a solve or the loss turns NaN/inf, or the
    test residual stays above ``divergence_residual`` for ``divergence_epochs`` epochs.
    """
    cfg = parse_params(params, TrainConfig)
    seed_everything(cfg.seed)
    device = trial.device
    data = load_dataset(cfg.dataset, samples=cfg.samples, size=cfg.image_size).to(device)
    model = build_model(cfg.model_spec(data.in_shape, data.classes), cfg.deq_config()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    trial.set_tag("deq.parameters", count_parameters(model))
    runaway = 0
    metrics: dict[str, float] = {}
    for epoch in range(cfg.epochs):
        reset_peak_memory(device)
        where = f"epoch {epoch}"
        try:
            train = train_epoch(
                model,
                optimizer,
                data.x_train,
                data.y_train,
                batch_size=cfg.batch_size,
                generator=generator,
                default_nfe=cfg.nmf_steps,
                where=where,
            )
            test = evaluate(
                model,
                data.x_test,
                data.y_test,
                batch_size=max(cfg.batch_size, 256),
                spectral_iters=cfg.spectral_iters,
                default_nfe=cfg.nmf_steps,
                where=where,
            )
        except SolverDiverged as err:
            raise TrialDiverged(f"{cfg.model}/{cfg.solver}: {err}") from err
        metrics = {
            **train,
            **test,
            "peak_memory_mb": peak_memory_mb(device),
            "spectral_radius": finite_or(test["spectral_radius"], 1e6),
            "spectral_radius_max": finite_or(test["spectral_radius_max"], 1e6),
            "weight_norm_max": finite_or(weight_norm_max(model), 1e6),
        }
        trial.report(epoch, **metrics)
        runaway = runaway + 1 if metrics["residual"] > cfg.divergence_residual else 0
        if runaway >= cfg.divergence_epochs:
            raise TrialDiverged(
                f"{cfg.model}/{cfg.solver}: test residual {metrics['residual']:.3g} above "
                f"{cfg.divergence_residual:g} for {runaway} consecutive epochs (epoch {epoch})"
            )
    trial.log_artifact(save_checkpoint(trial.workdir / "model.pt", model, cfg))
    if isinstance(model, DEQClassifier):
        trial.log_artifact(_trace_plot(model, data.x_test[: cfg.batch_size], cfg, trial))
    return {name: float(metrics[name]) for name in RETURNED}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def _trace_plot(model: DEQClassifier, x: torch.Tensor, cfg: TrainConfig, trial: Trial) -> Any:
    """Residual vs evaluations of every registered solver on the trained f (one test batch)."""
    model.eval()
    f, z0 = model.bind(x)
    opts = cfg.deq_config().forward
    traces = {name: solve_with(f, z0, name, opts)[1].trace for name in solver_names()}
    title = f"{cfg.model}, depth {cfg.depth}, width {cfg.width}: trained f, one test batch"
    return plot_traces(traces, trial.workdir / "residual_trace.png", tol=cfg.tol, title=title)
