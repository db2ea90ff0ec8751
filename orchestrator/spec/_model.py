"""The sweep spec as a pydantic model, and its JSON schema."""

from __future__ import annotations

import math
import posixpath
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.spec._space import sampling_order

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_NAME_LENGTH",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Objective",
    "Param",
    "Resources",
    "Spec",
    "StopRule",
    "spec_schema",
]

Scalar = bool | int | float | str | None

#: Longest study name. It names the Optuna study (512), the MLflow experiment (256) and parent
#: run (250), the package ``orch submit`` uploads (``NAME.zip``) and the Ray job's log file,
#: ``job-driver-orch-NAME-YYYYmmdd-HHMMSS-xxxx.log``: a file name of at most 255 bytes.
MAX_NAME_LENGTH = 200
#: Longest parameter, metric or tag name: MLflow's limit on keys (Optuna's is 512).
MAX_KEY_LENGTH = 250
#: The characters MLflow accepts in a param, metric or tag name.
_MLFLOW_KEY = re.compile(r"^[/\w.\- :]+$")
Condition = dict[str, Scalar | list[Scalar]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objective(_Strict):
    """One metric the study optimises."""

    metric: str = Field(min_length=1, description="Name of a metric the job returns.")

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        return check_key(value, "metric")

    direction: Literal["minimize", "maximize"] = "minimize"


class Resources(_Strict):
    """What one trial needs from the cluster; passed to Ray as the trial's resources."""

    cpus: float = Field(1.0, ge=0, description="CPU cores per trial (fractions allowed).")
    gpus: float = Field(0.0, ge=0, description="GPUs per trial; 0.25 lets four trials share one.")
    memory_gb: float | None = Field(None, gt=0, description="RAM to reserve per trial, in GB.")
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. A100.")
    custom: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources per trial, e.g. {tpu_slice: 1}."
    )

    @field_validator("gpus")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and not float(value).is_integer():
            raise ValueError(f"more than one GPU must be a whole number, got {value}")
        return value


class _Param(_Strict):
    when: Condition | None = Field(
        None,
        description="Sample this parameter only when every named parameter has the given "
        "value (or one of the listed values).",
    )


class IntParam(_Param):
    """An integer in [low, high], optionally on a step grid or log scale."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log and step cannot be combined (use step: 1 with log: true)")
        return self


class FloatParam(_Param):
    """A float in [low, high], optionally on a step grid or log scale."""

    type: Literal["float"]
    low: float
    high: float
    step: float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite")
        _check_range(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self


class CategoricalParam(_Param):
    """One of a list of choices."""

    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: list[Scalar]) -> list[Scalar]:
        seen = [repr(c) for c in choices]
        if len(set(seen)) != len(seen):
            raise ValueError(f"choices must be unique, got {choices}")
        return choices


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


def _check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) must not exceed high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0, got {low}")


# Samplers -------------------------------------------------------------------------------------


class _Sampler(_Strict):
    seed: int | None = Field(None, description="Seed for reproducible sampling.")


class History(_Strict):
    """Which finished trials TPE models once a study is large: the latest and the best."""

    recent: int = Field(1000, ge=1, description="The latest finished trials.")
    best: int = Field(
        100, ge=25, description="The best trials (at least 25: all of TPE's good group)."
    )


class TPESamplerSpec(_Sampler):
    type: Literal["tpe"]
    n_startup_trials: int = Field(10, ge=0)
    multivariate: bool = False
    group: bool = False
    constant_liar: bool = Field(
        True, description="Penalise running trials so parallel workers explore different points."
    )
    history: History | Literal["all"] = Field(
        default_factory=History,
        description="Past recent + best finished trials, model only those (ask cost stops "
        "growing with the study); `all` models every trial.",
    )


class RandomSamplerSpec(_Sampler):
    type: Literal["random"]


class CmaEsSamplerSpec(_Sampler):
    type: Literal["cmaes"]
    n_startup_trials: int = Field(1, ge=0)
    sigma0: float | None = Field(None, gt=0)
    restart_strategy: Literal["ipop", "bipop"] | None = None


class GridSamplerSpec(_Sampler):
    type: Literal["grid"]


class NSGAIISamplerSpec(_Sampler):
    type: Literal["nsga2"]
    population_size: int = Field(50, ge=2)
    mutation_prob: float | None = Field(None, ge=0, le=1)
    crossover_prob: float = Field(0.9, ge=0, le=1)


class NSGAIIISamplerSpec(_Sampler):
    type: Literal["nsga3"]
    population_size: int = Field(50, ge=2)


class QMCSamplerSpec(_Sampler):
    type: Literal["qmc"]
    qmc_type: Literal["sobol", "halton"] = "sobol"
    scramble: bool = True


class GPSamplerSpec(_Sampler):
    type: Literal["gp"]
    n_startup_trials: int = Field(10, ge=0)


SamplerSpec = Annotated[
    TPESamplerSpec
    | RandomSamplerSpec
    | CmaEsSamplerSpec
    | GridSamplerSpec
    | NSGAIISamplerSpec
    | NSGAIIISamplerSpec
    | QMCSamplerSpec
    | GPSamplerSpec,
    Field(discriminator="type"),
]

# Pruners --------------------------------------------------------------------------------------


class NoPrunerSpec(_Strict):
    type: Literal["none"]


class MedianPrunerSpec(_Strict):
    type: Literal["median"]
    warmup_steps: int = Field(0, ge=0, description="Never prune before this step.")
    startup_trials: int = Field(5, ge=0, description="Never prune before this many trials end.")
    interval_steps: int = Field(1, ge=1)


class PercentilePrunerSpec(MedianPrunerSpec):
    type: Literal["percentile"]  # type: ignore[assignment]
    percentile: float = Field(25.0, ge=0, le=100)


class HyperbandPrunerSpec(_Strict):
    type: Literal["hyperband"]
    min_resource: int = Field(1, ge=1)
    max_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(3, ge=2)


class SuccessiveHalvingPrunerSpec(_Strict):
    type: Literal["successive_halving"]
    min_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(4, ge=2)
    min_early_stopping_rate: int = Field(0, ge=0)


class ThresholdPrunerSpec(_Strict):
    type: Literal["threshold"]
    lower: float | None = None
    upper: float | None = None
    warmup_steps: int = Field(0, ge=0)


PrunerSpec = Annotated[
    NoPrunerSpec
    | MedianPrunerSpec
    | PercentilePrunerSpec
    | HyperbandPrunerSpec
    | SuccessiveHalvingPrunerSpec
    | ThresholdPrunerSpec,
    Field(discriminator="type"),
]

# Stopping rules -------------------------------------------------------------------------------


class StopRule(_Strict):
    """End a trial PRUNED once a metric it reports stays below (or above) a threshold."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"oneOf": [{"required": ["below"]}, {"required": ["above"]}]},
    )

    metric: str = Field(
        min_length=1, description="A metric the job reports with trial.report(step, ...)."
    )
    below: float | None = Field(None, description="The rule holds when the metric is < this.")
    above: float | None = Field(None, description="The rule holds when the metric is > this.")
    after_step: int = Field(0, ge=0, description="Only reports at steps >= this count.")
    patience: int = Field(
        1, ge=1, description="Consecutive reports of the metric the rule must hold for."
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> StopRule:
        given = [name for name in ("below", "above") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "needs exactly one of below or above"
                + (f", got both ({self.below}, {self.above})" if given else "")
            )
        if not math.isfinite(self.threshold):
            raise ValueError(f"{given[0]} must be a finite number, got {self.threshold}")
        return self

    @property
    def threshold(self) -> float:
        """The value the metric is compared with."""
        return self.below if self.below is not None else self.above  # type: ignore[return-value]

    def holds(self, value: float) -> bool:
        """Whether ``value`` is on the stopping side of the threshold (never for NaN)."""
        return value < self.threshold if self.below is not None else value > self.threshold

    def describe(self) -> str:
        """The rule in words, e.g. ``residual above 0.01 for 2 consecutive reports from step 1``."""
        side = "below" if self.below is not None else "above"
        text = f"{self.metric} {side} {self.threshold:g}"
        if self.patience > 1:
            text += f" for {self.patience} consecutive reports"
        if self.after_step:
            text += f" from step {self.after_step}"
        return text


# The spec -------------------------------------------------------------------------------------


class Spec(_Strict):
    """A sweep: which job to run, over which space, optimising what, on what resources."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="orch sweep spec")

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=MAX_NAME_LENGTH,
        description="Optuna study name and MLflow experiment name.",
    )
    job: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:function of the trial function run(params, trial) -> dict.",
    )
    objective: Objective | list[Objective] = Field(
        description="One {metric, direction} mapping, or a list of them (Pareto front)."
    )
    trials: int = Field(20, ge=1, description="Finished trials the study should hold.")
    parallel: int | None = Field(
        None, ge=1, description="Trials at once (default: as many as the cluster can hold)."
    )
    resources: Resources = Field(default_factory=Resources)
    sampler: SamplerSpec = Field(default_factory=lambda: TPESamplerSpec(type="tpe"))
    pruner: PrunerSpec = Field(default_factory=lambda: NoPrunerSpec(type="none"))
    space: dict[str, Param] = Field(description="The parameters to sample, by name.")
    fixed: dict[str, Any] = Field(
        default_factory=dict, description="Constant parameters passed to every trial."
    )
    retries: int = Field(
        2, ge=0, description="Re-runs of a trial whose worker or node died (same params)."
    )
    retry_exceptions: bool = Field(
        False, description="Also retry trials whose job raised an exception."
    )
    trial_timeout_s: float | None = Field(
        None, gt=0, description="Cancel a trial running longer than this (it ends FAILED)."
    )
    store_timeout_s: float = Field(
        300.0,
        gt=0,
        description="How long the sweep waits for an unreachable study or tracking database "
        "before it stops (continue it with --resume).",
    )
    description: str | None = Field(None, description="Free text shown on the parent run.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags of the parent run.")
    pip: list[str] = Field(
        default_factory=list, description="Extra pip packages for `orch submit` to install."
    )
    stop_when: list[StopRule] = Field(
        default_factory=list,
        description="Rules on reported metrics that end a trial PRUNED as soon as one holds "
        "(whatever the pruner, and in multi-objective studies too).",
    )

    @property
    def objectives(self) -> list[Objective]:
        """The objectives as a list, whichever form the spec used."""
        return self.objective if isinstance(self.objective, list) else [self.objective]

    @property
    def stops_trials(self) -> bool:
        """Whether the hub may stop a trial at a report (a pruner or ``stop_when`` rules)."""
        return self.pruner.type != "none" or bool(self.stop_when)

    @field_validator("objective")
    @classmethod
    def _objectives(cls, value: Objective | list[Objective]) -> Objective | list[Objective]:
        metrics = [o.metric for o in (value if isinstance(value, list) else [value])]
        if not metrics:
            raise ValueError("needs at least one {metric, direction}")
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"metrics must be distinct, got {metrics}")
        return value

    @field_validator("space")
    @classmethod
    def _space(cls, space: dict[str, Any]) -> dict[str, Any]:
        if not space:
            raise ValueError("needs at least one parameter")
        for name in space:
            check_key(name, "parameter")
        return space

    @field_validator("fixed")
    @classmethod
    def _fixed(cls, fixed: dict[str, Any]) -> dict[str, Any]:
        for name in fixed:
            check_key(str(name), "parameter")
        return fixed

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for name in tags:
            check_key(name, "tag")
        return tags

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        if len(self.objectives) > 1 and self.pruner.type != "none":
            raise ValueError(
                f"pruner: {self.pruner.type!r} needs a single objective; "
                "multi-objective studies take pruner: {type: none}"
            )
        clash = sorted(set(self.fixed) & set(self.space))
        if clash:
            raise ValueError(
                f"fixed: {clash} also in space; a parameter is either fixed or sampled"
            )
        _check_conditions(self.space)
        if self.sampler.type == "grid":
            _check_grid(self.space)
        return self


def check_key(name: str, what: str) -> str:
    """``name`` if MLflow and Optuna take it as a param, metric or tag name.

    Raises:
        ValueError: it is longer than ``MAX_KEY_LENGTH``, holds characters MLflow refuses, or is
            a path that is not its own normal form (``a/../b``, ``/a``).
    """
    if len(name) > MAX_KEY_LENGTH:
        raise ValueError(
            f"{what} name of {len(name)} characters; MLflow takes at most {MAX_KEY_LENGTH}"
        )
    if not _MLFLOW_KEY.match(name):
        raise ValueError(
            f"{what} name {_short(name)}: MLflow takes letters, digits, _ - . / : and spaces"
        )
    normal = posixpath.normpath(name)
    if normal != name or normal == "." or normal.startswith(("..", "/")):
        raise ValueError(f"{what} name {_short(name)}: MLflow refuses path-like names")
    return name


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


def _check_conditions(space: dict[str, Any]) -> None:
    for name, param in space.items():
        for ref, value in (param.when or {}).items():
            if ref not in space:
                raise ValueError(f"space.{name}.when: unknown parameter {ref!r}")
            if ref == name:
                raise ValueError(f"space.{name}.when: a parameter cannot depend on itself")
            target = space[ref]
            wanted = value if isinstance(value, list) else [value]
            if isinstance(target, CategoricalParam):
                missing = [v for v in wanted if v not in target.choices]
                if missing:
                    raise ValueError(
                        f"space.{name}.when.{ref}: {missing} not among {ref}'s choices "
                        f"{target.choices}"
                    )
    sampling_order(space)  # raises on cycles


def _check_grid(space: dict[str, Any]) -> None:
    for name, param in space.items():
        if isinstance(param, FloatParam) and param.step is None:
            raise ValueError(f"sampler 'grid' needs a step for float space.{name}")
        if param.when:
            raise ValueError(f"sampler 'grid' cannot sample conditional space.{name}")


def spec_schema() -> dict[str, Any]:
    """The JSON schema of a spec file, for editors."""
    return Spec.model_json_schema()
