"""``--set key.path=value`` overrides applied to a spec's raw YAML data before validation."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import yaml

from orchestrator.errors import SpecError

__all__ = ["apply_overrides", "parse_override"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into its key path and its value, read as a YAML scalar or list."""
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(path):
        raise SpecError(f"--set {text!r}: expected key=value, e.g. --set fixed.epochs=1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[str]
) -> tuple[dict[str, Any], set[str]]:
    """Return a copy of ``data`` with each override set, and the dotted keys overridden."""
    result = copy.deepcopy(data)
    keys: set[str] = set()
    for text in overrides:
        path, value = parse_override(text)
        _set(result, path, value, text)
        keys.add(".".join(path))
    return result, keys


def _set(data: Any, path: list[str], value: Any, text: str) -> None:
    node = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            parent = ".".join(path[:depth]) or "(spec)"
            raise SpecError(f"--set {text!r}: {parent} has no field {part!r} to set ({where})")
