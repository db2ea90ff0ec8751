"""The sweep spec: its pydantic model and JSON schema, loading YAML with ``--set`` overrides, the
search space's conditions, and the check of a sweep before it runs.

No Optuna, Ray or MLflow here: turning the spec into Optuna samplers is :mod:`orchestrator.study`'s
job. May import :mod:`orchestrator.errors` and :mod:`orchestrator.trial` (to import the job).
"""

from orchestrator.spec._load import load_spec
from orchestrator.spec._model import (
    MAX_KEY_LENGTH,
    MAX_NAME_LENGTH,
    CategoricalParam,
    CmaEsSamplerSpec,
    FloatParam,
    GPSamplerSpec,
    GridSamplerSpec,
    History,
    HyperbandPrunerSpec,
    IntParam,
    MedianPrunerSpec,
    NoPrunerSpec,
    NSGAIIISamplerSpec,
    NSGAIISamplerSpec,
    Objective,
    Param,
    PercentilePrunerSpec,
    QMCSamplerSpec,
    RandomSamplerSpec,
    Resources,
    Spec,
    StopRule,
    SuccessiveHalvingPrunerSpec,
    ThresholdPrunerSpec,
    TPESamplerSpec,
    spec_schema,
)
from orchestrator.spec._overrides import apply_overrides
from orchestrator.spec._prepare import PreparedSweep, prepare_sweep
from orchestrator.spec._space import is_active, sampling_order

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_NAME_LENGTH",
    "CategoricalParam",
    "CmaEsSamplerSpec",
    "FloatParam",
    "GPSamplerSpec",
    "GridSamplerSpec",
    "History",
    "HyperbandPrunerSpec",
    "IntParam",
    "MedianPrunerSpec",
    "NSGAIIISamplerSpec",
    "NSGAIISamplerSpec",
    "NoPrunerSpec",
    "Objective",
    "Param",
    "PercentilePrunerSpec",
    "PreparedSweep",
    "QMCSamplerSpec",
    "RandomSamplerSpec",
    "Resources",
    "Spec",
    "StopRule",
    "SuccessiveHalvingPrunerSpec",
    "TPESamplerSpec",
    "ThresholdPrunerSpec",
    "apply_overrides",
    "is_active",
    "load_spec",
    "prepare_sweep",
    "sampling_order",
    "spec_schema",
]
