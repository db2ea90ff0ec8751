"""Train the attention layer with one optimiser and track its direction against the Att-SVMs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from jobs.attention.data import TokenSelectionData, make_dataset
from jobs.attention.metrics import cosine, lp_distance, matrix_norm, normalised_margin
from jobs.attention.model import AttentionModel, Forward
from jobs.attention.optimizers import StepConfig, get_optimizer, global_norm
from jobs.attention.params import Config
from jobs.attention.svm import NUCLEAR, solve_att_svm

Reporter = Callable[[int, dict[str, float]], None]
_TINY = float(np.finfo(np.float64).tiny)


class Diverged(RuntimeError):
    """The loss or its gradient became non-finite."""


@dataclass(frozen=True)
class References:
    """The max-margin solutions a run is compared with; ``target`` is the one it should reach."""

    l2: np.ndarray
    lp: np.ndarray
    nuc: np.ndarray | None
    target: np.ndarray

    @classmethod
    def solve(cls, data: TokenSelectionData, cfg: Config) -> References:
        l2 = solve_att_svm(data, 2.0)
        lp = l2 if cfg.p == 2 else solve_att_svm(data, cfg.p)
        nuc = solve_att_svm(data, NUCLEAR) if cfg.param == "KQ" else None
        target = {NUCLEAR: nuc, 2.0: l2}.get(cfg.target_norm, lp)
        return cls(l2=l2, lp=lp, nuc=nuc, target=target)


@dataclass
class Outcome:
    """Per-step cosine curves (to the target, l2 and l_p SVMs) and the final metrics of a run."""

    alignment: list[float] = field(default_factory=list)
    alignment_l2: list[float] = field(default_factory=list)
    alignment_lp: list[float] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    W: np.ndarray | None = None


def simulate(
    cfg: Config, *, device: torch.device | None = None, report: Reporter | None = None
) -> tuple[Outcome, References]:
    """Run ``cfg.steps`` optimiser steps; call ``report`` every ``cfg.report_interval`` steps.

    ``steps_to_alignment`` is the first step whose cosine with the target SVM direction reaches
    ``cfg.threshold``, or ``steps + 1`` if none does. A run whose gradient underflows to zero
    (attention one-hot to machine precision) stops early: its direction can no longer change.
    """
    data = make_dataset(n=cfg.n, T=cfg.T, d=cfg.d, seed=cfg.seed, score=cfg.score)
    refs = References.solve(data, cfg)
    A = data.constraint_matrix()
    model = AttentionModel(
        data,
        param=cfg.param,
        head=cfg.head,
        loss=cfg.loss,
        rank=cfg.key_rank,
        init_scale=cfg.init_scale,
        seed=cfg.seed,
        device=device or torch.device("cpu"),
    )
    with _one_thread():
        out = _train(cfg, model, refs, A, report)
    return out, refs


def _train(
    cfg: Config, model: AttentionModel, refs: References, A: np.ndarray, report: Reporter | None
) -> Outcome:
    update = get_optimizer(cfg.optimizer).update
    step_cfg = StepConfig(lr=cfg.step_size, p=cfg.p, potential=cfg.potential)
    out = Outcome()
    first_aligned: int | None = None
    for step in range(cfg.steps + 1):
        fwd = model.forward()
        loss = float(fwd.loss.detach())
        if not math.isfinite(loss):
            raise Diverged(f"non-finite loss {loss} at step {step}")
        W = model.W().detach().cpu().numpy()
        out.alignment.append(cosine(W, refs.target))
        out.alignment_l2.append(cosine(W, refs.l2))
        out.alignment_lp.append(cosine(W, refs.lp))
        if first_aligned is None and out.alignment[-1] >= cfg.threshold:
            first_aligned = step
        grads = None if step == cfg.steps else _gradients(fwd, model.params, step)
        if grads is None or step % cfg.report_interval == 0:
            metrics = _metrics(out, fwd, W, A, refs, cfg)
            if report is not None:
                report(step, metrics)
        if grads is None:
            break
        update(model.params, grads, float(fwd.gap), step_cfg)
    out.W = W
    out.final = {
        "steps_to_alignment": float(cfg.steps + 1 if first_aligned is None else first_aligned),
        "final_alignment": metrics.pop("alignment"),
        "final_loss": metrics.pop("loss"),
        "steps_run": float(step),
        **metrics,
    }
    return out


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch single-threaded: on tensors this small, intra-op threads only add overhead
    (tens of times slower when the cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _gradients(fwd: Forward, params: list[torch.Tensor], step: int) -> list[torch.Tensor] | None:
    """Gradients of the loss; None once the loss gap leaves the normal float64 range (the
    attention is one-hot to machine precision and the direction can no longer change).

    Raises :class:`Diverged` on a non-finite gradient.
    """
    grads = list(torch.autograd.grad(fwd.loss, params))
    norm = global_norm(grads)
    if not math.isfinite(norm):
        raise Diverged(f"non-finite gradient norm {norm} at step {step}")
    return grads if norm > 0 and float(fwd.gap) >= _TINY else None


def _metrics(
    out: Outcome, fwd: Forward, W: np.ndarray, A: np.ndarray, refs: References, cfg: Config
) -> dict[str, float]:
    """What a report carries (see docs/attention.md for each metric)."""
    metrics = {
        "loss": float(fwd.loss.detach()),
        "loss_gap": float(fwd.gap),
        "alignment": out.alignment[-1],
        "alignment_l2": out.alignment_l2[-1],
        "alignment_lp": out.alignment_lp[-1],
        "lp_distance": lp_distance(W, refs.lp, cfg.p),
        "weight_norm": float(np.linalg.norm(W)),
        "margin": normalised_margin(W, A),
        "margin_ratio": normalised_margin(W, A, cfg.target_norm)
        * matrix_norm(refs.target, cfg.target_norm),
        "opt_attention": float(fwd.opt_attention),
    }
    if refs.nuc is not None:
        metrics["alignment_nuc"] = cosine(W, refs.nuc)
    return metrics
