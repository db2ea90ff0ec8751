"""Parameters of the train and evaluate jobs: names, defaults, types and checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar, get_type_hints

from jobs.deq.cells import ACTIVATIONS
from jobs.deq.core import GRAD_MODES, DEQConfig
from jobs.deq.data import DATASETS
from jobs.deq.hamburger import NMF_GRADS
from jobs.deq.models import MODELS, ModelSpec
from jobs.deq.norm import NORMS
from jobs.deq.solvers import STOP_MODES, SolverOptions, solver_names

__all__ = ["EvalConfig", "TrainConfig", "parse_params"]


@dataclass(frozen=True)
class TrainConfig:
    """One training run of ``jobs.deq.train:run`` (see docs/deq.md for every field)."""

    model: str = "deq"  # deq | hamburger | deq-hamburger
    depth: int = 1  # layers inside f
    width: int = 64  # units (deq) or channels (hamburger models)
    activation: str = "relu"
    norm: str = "spectral"  # none | weight | spectral (keeps f contractive)
    bound: float = 0.9  # spectral-norm bound per layer
    init_scale: float = 1.0  # scale of the cell's initial weights
    solver: str = "anderson"  # forward | anderson | broyden
    memory: int = 5
    tol: float = 1e-4
    max_iter: int = 50
    stop_mode: str = "rel"
    beta: float = 1.0  # Anderson mixing
    lam: float = 1e-8  # Anderson regularisation (relative)
    grad: str = "implicit"  # implicit | phantom | unrolled
    backward_solver: str = "anderson"
    backward_tol: float = 1e-4
    backward_max_iter: int = 50
    phantom_steps: int = 1
    damping: float = 1.0
    rank: int = 8  # NMF rank
    nmf_steps: int = 6  # NMF multiplicative updates
    nmf_grad: str = "full"  # full | one-step: differentiate all NMF updates or the last one
    lr: float = 3e-3
    weight_decay: float = 0.0
    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    dataset: str = "digits"  # digits | synthetic
    samples: int = 4000  # synthetic dataset size
    image_size: int = 8  # synthetic image side
    divergence_residual: float = 0.5  # test residual counted as runaway
    divergence_epochs: int = 2  # consecutive runaway epochs that end the trial
    spectral_iters: int = 20  # power iterations of the spectral-radius estimate

    def __post_init__(self) -> None:
        _check_choices(
            self,
            model=MODELS,
            activation=tuple(ACTIVATIONS),
            norm=NORMS,
            solver=tuple(solver_names()),
            backward_solver=tuple(solver_names()),
            stop_mode=STOP_MODES,
            grad=GRAD_MODES,
            dataset=DATASETS,
            nmf_grad=NMF_GRADS,
        )
        _check_rules(
            self,
            {
                "depth >= 1": self.depth >= 1,
                "width >= 1": self.width >= 1,
                "bound > 0": self.bound > 0,
                "init_scale > 0": self.init_scale > 0,
                "rank >= 1": self.rank >= 1,
                "nmf_steps >= 1": self.nmf_steps >= 1,
                "lr > 0": self.lr > 0 and math.isfinite(self.lr),
                "weight_decay >= 0": self.weight_decay >= 0,
                "epochs >= 1": self.epochs >= 1,
                "batch_size >= 1": self.batch_size >= 1,
                "samples >= 40": self.samples >= 40,
                "image_size >= 4": self.image_size >= 4,
                "divergence_residual > 0": self.divergence_residual > 0,
                "divergence_epochs >= 1": self.divergence_epochs >= 1,
                "spectral_iters >= 2": self.spectral_iters >= 2,
            },
        )
        self.deq_config()  # validates the solver and gradient settings

    def model_spec(self, in_shape: tuple[int, int, int], classes: int) -> ModelSpec:
        return ModelSpec(
            model=self.model,
            depth=self.depth,
            width=self.width,
            activation=self.activation,
            norm=self.norm,
            bound=self.bound,
            init_scale=self.init_scale,
            rank=self.rank,
            nmf_steps=self.nmf_steps,
            nmf_grad=self.nmf_grad,
            in_shape=in_shape,
            classes=classes,
        )

    def deq_config(self) -> DEQConfig:
        return DEQConfig(
            solver=self.solver,
            forward=SolverOptions(
                tol=self.tol,
                max_iter=self.max_iter,
                memory=self.memory,
                stop_mode=self.stop_mode,
                beta=self.beta,
                lam=self.lam,
            ),
            grad=self.grad,
            backward_solver=self.backward_solver,
            backward=SolverOptions(
                tol=self.backward_tol,
                max_iter=self.backward_max_iter,
                memory=self.memory,
                stop_mode=self.stop_mode,
                beta=self.beta,
                lam=self.lam,
            ),
            phantom_steps=self.phantom_steps,
            damping=self.damping,
        )


@dataclass(frozen=True)
class EvalConfig:
    """One test-time evaluation of a trained checkpoint by ``jobs.deq.evaluate:run``."""

    checkpoint: str = ""  # local path, or MLflow URI (runs:/<run_id>/model.pt, models:/...)
    solver: str = "anderson"
    memory: int = 5
    tol: float = 1e-4
    max_iter: int = 50
    stop_mode: str = "rel"
    beta: float = 1.0
    lam: float = 1e-8
    batch_size: int = 256
    seed: int = 0
    spectral_iters: int = 20
    epochs: int = 1  # passes over the test set; eval_time_s is their mean

    def __post_init__(self) -> None:
        _check_choices(self, solver=tuple(solver_names()), stop_mode=STOP_MODES)
        _check_rules(
            self,
            {
                "checkpoint set (a path or runs:/<run_id>/model.pt)": bool(self.checkpoint),
                "batch_size >= 1": self.batch_size >= 1,
                "spectral_iters >= 2": self.spectral_iters >= 2,
                "epochs >= 1": self.epochs >= 1,
            },
        )
        self.solver_options()

    def solver_options(self) -> SolverOptions:
        return SolverOptions(
            tol=self.tol,
            max_iter=self.max_iter,
            memory=self.memory,
            stop_mode=self.stop_mode,
            beta=self.beta,
            lam=self.lam,
        )


def _check_choices(cfg: object, **choices: tuple[str, ...]) -> None:
    for name, allowed in choices.items():
        value = getattr(cfg, name)
        if value not in allowed:
            raise ValueError(f"param {name!r} must be one of {sorted(allowed)}, got {value!r}")


def _check_rules(cfg: object, rules: dict[str, bool]) -> None:
    failed = [rule for rule, ok in rules.items() if not ok]
    if failed:
        raise ValueError(f"invalid params: need {'; '.join(failed)} (got {cfg})")


Config = TypeVar("Config", TrainConfig, EvalConfig)


def parse_params(params: Mapping[str, Any], kind: type[Config]) -> Config:
    """Build ``kind`` from a sweep's params; unknown names raise ``ValueError`` naming the known."""
    hints = get_type_hints(kind)
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown params {unknown} for {kind.__name__}; known: {sorted(known)}")
    return kind(**{name: _coerce(name, hints[name], value) for name, value in params.items()})


def _coerce(name: str, kind: Any, value: Any) -> Any:
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"param {name!r} must be a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"param {name!r} must be a number, got {value!r}")
    if kind is int:
        if not float(value).is_integer():
            raise ValueError(f"param {name!r} must be an integer, got {value!r}")
        return int(value)
    return float(value)
