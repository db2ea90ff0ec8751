"""The job's parameters: names, defaults, types and checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from jobs.attention.model import HEADS, LOSSES, PARAMS
from jobs.attention.optimizers import OPTIMIZERS, POTENTIALS, get_optimizer
from jobs.attention.svm import NUCLEAR


@dataclass(frozen=True)
class Config:
    """One run of the attention implicit-bias experiment (see docs/attention.md)."""

    optimizer: str = "ngd"  # gd | ngd | polyak | mirror
    lr: float | None = None  # step size (polyak: Polyak-step multiplier); None: per optimiser
    p: float = 3.0  # l_p of mirror descent and of the l_p-SVM reported as alignment_lp
    potential: str = "power"  # mirror map: power = ||w||_p^p / p, squared = ||w||_p^2 / 2
    steps: int = 2000
    n: int = 8  # sequences
    T: int = 6  # tokens per sequence
    d: int = 8  # token dimension
    seed: int = 0  # data and initialisation
    score: float = 1.0  # the optimal token's score y_i * v @ x_opt (all others score 0)
    loss: str = "logistic"  # logistic | exp
    head: str = "fixed"  # fixed | trainable
    param: str = "W"  # W (combined) | KQ (factorised W = K Q^T)
    rank: int = 0  # columns of K and Q; 0: d
    init_scale: float = 0.01  # std of the Gaussian initialisation
    threshold: float = 0.99  # cosine that counts as aligned for steps_to_alignment
    report_every: int = 0  # steps between reports; 0: about 100 reports per run

    def __post_init__(self) -> None:
        get_optimizer(self.optimizer)
        for name, value, choices in (
            ("potential", self.potential, POTENTIALS),
            ("loss", self.loss, LOSSES),
            ("head", self.head, HEADS),
            ("param", self.param, PARAMS),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        checks = {
            "lr > 0": self.lr is None or (self.lr > 0 and math.isfinite(self.lr)),
            "1 < p < inf": 1 < self.p < math.inf,
            "steps >= 1": self.steps >= 1,
            "n >= 1, T >= 2, d >= 2": self.n >= 1 and self.T >= 2 and self.d >= 2,
            "score > 0": self.score > 0,
            "rank >= 0": self.rank >= 0,
            "init_scale >= 0": self.init_scale >= 0,
            "0 < threshold <= 1": 0 < self.threshold <= 1,
            "report_every >= 0": self.report_every >= 0,
            "init_scale > 0 for param=KQ (K = Q = 0 is a saddle)": (
                self.param != "KQ" or self.init_scale > 0
            ),
            "param=W for optimizer=mirror (its limit is the l_p-SVM of W)": (
                self.optimizer != "mirror" or self.param == "W"
            ),
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid attention params: need {'; '.join(failed)} (got {self})")

    @property
    def step_size(self) -> float:
        """``lr``, or the optimiser's default when not given."""
        return self.lr if self.lr is not None else OPTIMIZERS[self.optimizer].default_lr

    @property
    def key_rank(self) -> int:
        return self.rank or self.d

    @property
    def target_norm(self) -> float | str:
        """The SVM whose direction this run should converge to.

        l_p for mirror descent, nuclear for a factorised ``K Q^T``, else Frobenius (l_2).
        """
        if self.optimizer == "mirror":
            return self.p
        return NUCLEAR if self.param == "KQ" else 2.0

    @property
    def report_interval(self) -> int:
        return self.report_every or max(1, math.ceil(self.steps / 100))


_KINDS = {"int": int, "float": float, "float | None": float, "str": str}


def parse_params(params: Mapping[str, Any]) -> Config:
    """Build a :class:`Config` from a sweep's params; unknown names raise ``ValueError``."""
    known = {f.name: _KINDS[str(f.type)] for f in fields(Config)}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"unknown attention params {unknown}; known: {sorted(known)}")
    return Config(**{name: _coerce(name, known[name], value) for name, value in params.items()})


def _coerce(name: str, kind: type, value: Any) -> Any:
    if value is None and name == "lr":
        return None
    if kind is str and isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or kind is str:
        raise ValueError(f"param {name!r} must be a {kind.__name__}, got {value!r}")
    if kind is int:
        if not float(value).is_integer():
            raise ValueError(f"param {name!r} must be an integer, got {value!r}")
        return int(value)
    return float(value)
