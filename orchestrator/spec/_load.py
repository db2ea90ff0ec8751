"""Reading a spec file: YAML, ``--set`` overrides, validation, and one-line errors.

A spec is read with limits, so a hostile file is refused before it can exhaust memory or time:
its size, the aliases it uses, how deep it nests and how many values it expands to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.errors import SpecError
from orchestrator.spec._model import Spec
from orchestrator.spec._overrides import apply_overrides

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_SPEC_BYTES", "MAX_VALUES", "load_spec"]

#: A spec file is refused above this size (the examples are under 2 KB).
MAX_SPEC_BYTES = 1_000_000
#: Aliases (``*name``) a spec may hold.
MAX_ALIASES = 1_000
#: Values (scalars, lists, mappings) a spec may expand to, each alias counted at every use:
#: what stops a "billion laughs" document, a few hundred bytes that expand to 10**9 strings.
MAX_VALUES = 100_000
#: Lists and mappings nested in one another.
MAX_DEPTH = 100


def load_spec(path: str | Path, *, overrides: Sequence[str] = ()) -> Spec:
    """Read, override and validate a spec file; raise :class:`SpecError` with one clear line.

    Raises:
        SpecError: the file is missing, not YAML, or a field or override is invalid (one line
                naming the file, line and field).
    """
    file = Path(path)
    node, data = _parse(file, _read(file))
    if not isinstance(data, dict):
        raise SpecError(f"{file}: a spec must be a YAML mapping of fields, got {_kind(data)}")
    data, overridden = apply_overrides(data, overrides)
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_describe(exc, file, data, node, overridden)) from None


def _read(file: Path) -> str:
    """The file's text, refused above ``MAX_SPEC_BYTES`` (read no further: it may be endless)."""
    try:
        with open(file, "rb") as stream:
            raw = stream.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{file}: no such spec file") from None
    except OSError as exc:
        raise SpecError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{file}: over {MAX_SPEC_BYTES:,} bytes; a spec is a short YAML file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{file}: not UTF-8 text (byte {exc.start})") from None


class _TooLarge(yaml.YAMLError):
    """The document is over one of the limits."""


class _CountingLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing more than ``MAX_ALIASES`` aliases while it composes."""

    aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooLarge(f"more than {MAX_ALIASES:,} aliases (*name)")
        return super().compose_node(parent, index)


def _parse(file: Path, text: str) -> tuple[yaml.Node | None, Any]:
    """The YAML tree of ``text`` and its data, checked against the limits before it is built."""
    loader = _CountingLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_size(node)
        return node, loader.construct_document(node) if node is not None else None
    except _TooLarge as exc:
        raise SpecError(f"{file}: refused: {exc}") from None
    except RecursionError:
        raise SpecError(f"{file}: refused: nested more than {MAX_DEPTH} levels deep") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()


def _check_size(root: yaml.Node) -> None:
    """Count the values ``root`` expands to (an alias's tree at each of its uses), without
    expanding it; refuse more than ``MAX_VALUES``, deeper than ``MAX_DEPTH``, or a cycle."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _TooLarge("an alias refers to a value that contains it")
        if depth > MAX_DEPTH:
            raise _TooLarge(f"nested more than {MAX_DEPTH} levels deep")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        open_nodes.discard(key)
        if total > MAX_VALUES:
            raise _TooLarge(f"expands to more than {MAX_VALUES:,} values (each alias counted)")
        sizes[key] = total
        return total

    size(root, 0)


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
