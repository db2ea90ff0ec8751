"""Reading a spec file: YAML, ``--set`` overrides, validation, and one-line errors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.errors import SpecError
from orchestrator.spec._model import Spec
from orchestrator.spec._overrides import apply_overrides

__all__ = ["load_spec"]


def load_spec(path: str | Path, *, overrides: Sequence[str] = ()) -> Spec:
    """Read, override and validate a spec file; raise :class:`SpecError` with one clear line.

    Raises:
        SpecError: the file is missing, not YAML, or a field or override is invalid (one line
                naming the file, line and field).
    """
    file = Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise SpecError(f"{file}: no such spec file") from None
    except OSError as exc:
        raise SpecError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{file}: a spec must be a YAML mapping of fields, got {_kind(data)}")
    data, overridden = apply_overrides(data, overrides)
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_describe(exc, file, data, node, overridden)) from None


def _kind(value: object) -> str:
    return "an empty file" if value is None else type(value).__name__


def _describe(
    exc: ValidationError,
    file: Path,
    data: dict[str, Any],
    node: yaml.Node | None,
    overridden: set[str],
) -> str:
    """One line for the most specific validation error: file, YAML line, field path, message."""
    error = max(exc.errors(), key=lambda e: len(e["loc"]))
    loc = _user_loc(error["loc"], data)
    dotted = ".".join(str(part) for part in loc) or "(spec)"
    field = _field_name(loc)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (check its spelling; see `orch schema`)"
    elif error["type"] == "union_tag_invalid":
        message = (
            f"unknown type {error['input'].get('type')!r}; " + message.split(":", 1)[-1].strip()
        )
    elif error["type"] not in ("missing", "model_attributes_type") and "input" in error:
        shown = repr(error["input"])
        if len(shown) <= 60 and not isinstance(error["input"], dict):
            message += f" (got {shown})"
    line = _line_of(node, loc)
    where = f"{file}:{line}" if line else str(file)
    from_set = any(
        dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + ".")
        for key in overridden
    )
    return f"{where}: {field}{' (from --set)' if from_set else ''}: {message}"


def _field_name(loc: Sequence[Any]) -> str:
    """A field path as written in docs: ``stop_when[1].patience``, ``space.x.low``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "(spec)"


_UNION_TAGS = {"int", "float", "categorical", "Objective", "list[Objective]"}


def _user_loc(loc: Iterable[Any], data: Any) -> list[Any]:
    """Drop the union/tag entries pydantic adds, so the path reads as the user's fields."""
    out: list[Any] = []
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if in_dict or in_list:
            data = data[part]
        elif isinstance(part, str) and (
            part in _UNION_TAGS or part.endswith(("SamplerSpec", "PrunerSpec"))
        ):
            continue
        else:
            data = None
        out.append(part)
    return out


def _line_of(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the deepest YAML node on the path ``loc``."""
    line = node.start_mark.line + 1 if isinstance(node, yaml.Node) else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [value for key, value in node.value if key.value == str(part)]
            if not match:
                break
            node = match[0]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line
