"""The spec's search space as Optuna suggestions: conditional parameters, sampling order, grids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from orchestrator.spec._model import CategoricalParam, FloatParam, IntParam

    AnyParam = IntParam | FloatParam | CategoricalParam

__all__ = ["grid", "is_active", "sampling_order", "suggest"]


def sampling_order(space: Mapping[str, AnyParam]) -> list[str]:
    """Names in spec order, moved after the parameters their ``when`` depends on."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in visiting:
            cycle = " -> ".join((*chain, name))
            raise ValueError(f"space: conditions form a cycle: {cycle}")
        visiting.add(name)
        for ref in space[name].when or {}:
            if ref in space:
                visit(ref, (*chain, name))
        visiting.discard(name)
        order.append(name)

    for name in space:
        visit(name, ())
    return order


def is_active(param: AnyParam, sampled: Mapping[str, Any]) -> bool:
    """Whether every condition of ``param`` holds for the values sampled so far."""
    for ref, wanted in (param.when or {}).items():
        if ref not in sampled:
            return False
        choices = wanted if isinstance(wanted, list) else [wanted]
        if sampled[ref] not in choices:
            return False
    return True


def suggest(trial: optuna.Trial, space: Mapping[str, AnyParam]) -> dict[str, Any]:
    """Sample one value per active parameter on an Optuna trial (define-by-run)."""
    params: dict[str, Any] = {}
    for name in sampling_order(space):
        param = space[name]
        if not is_active(param, params):
            continue
        if param.type == "int":
            params[name] = trial.suggest_int(
                name, param.low, param.high, step=param.step, log=param.log
            )
        elif param.type == "float":
            params[name] = trial.suggest_float(
                name, param.low, param.high, step=param.step, log=param.log
            )
        else:
            params[name] = trial.suggest_categorical(name, param.choices)
    return params


def grid(space: Mapping[str, AnyParam]) -> dict[str, list[Any]]:
    """Every value of every parameter, for Optuna's GridSampler (steps required for floats)."""
    values: dict[str, list[Any]] = {}
    for name, param in space.items():
        if param.type == "int":
            values[name] = list(range(param.low, param.high + 1, param.step))
        elif param.type == "float":
            if param.step is None:
                raise ValueError(f"space.{name}: a grid needs a step for float parameters")
            count = round((param.high - param.low) / param.step) + 1
            values[name] = [round(param.low + k * param.step, 12) for k in range(count)]
        else:
            values[name] = list(param.choices)
    return values
