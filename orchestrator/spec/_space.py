"""Conditional parameters of the search space: which are active, and in what order to sample."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["Conditional", "is_active", "sampling_order"]

Condition = Mapping[str, Any]


class Conditional(Protocol):
    """A parameter that may depend on others (``when: {name: value or [values]}``)."""

    @property
    def when(self) -> Condition | None: ...


def sampling_order(space: Mapping[str, Conditional]) -> list[str]:
    """Names in spec order, moved after the parameters their ``when`` depends on.

    Raises:
        ValueError: the conditions form a cycle.
    """
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


def is_active(param: Conditional, sampled: Mapping[str, Any]) -> bool:
    """Whether every condition of ``param`` holds for the values sampled so far."""
    for ref, wanted in (param.when or {}).items():
        if ref not in sampled:
            return False
        choices = wanted if isinstance(wanted, list) else [wanted]
        if sampled[ref] not in choices:
            return False
    return True
