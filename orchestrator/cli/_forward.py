"""``orch sweep``'s options as ``orch submit`` takes them and passes them on to the head.

``orch submit`` is derived from ``orch sweep``: every option a sweep takes (but the Ray address,
which is the cluster's own) is an option of ``submit`` too, and is forwarded as given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar, get_args

from typer.models import OptionInfo

__all__ = ["as_arguments", "with_options_of"]

_F = TypeVar("_F", bound=Callable[..., Any])


def with_options_of(
    source: Callable[..., Any], *, leave_out: Collection[str]
) -> Callable[[_F], _F]:
    """Give a command every parameter of ``source`` not in ``leave_out`` nor already its own.

    The command takes them as ``**kwargs``; Typer reads them from its signature.
    """

    def decorate(command: _F) -> _F:
        own = [
            p
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        taken = {p.name for p in own} | set(leave_out)
        extra = [p for p in _parameters(source) if p.name not in taken]
        command.__signature__ = inspect.Signature([*own, *extra])  # type: ignore[attr-defined]
        return command

    return decorate


def as_arguments(source: Callable[..., Any], values: Mapping[str, Any]) -> list[str]:
    """Command-line words for the options of ``source`` in ``values`` that differ from default."""
    words: list[str] = []
    for param in _parameters(source):
        value = values.get(param.name, param.default)
        if value is None or value == param.default:
            continue
        flag = _flag(param)
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif isinstance(value, list | tuple):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return words


def _parameters(source: Callable[..., Any]) -> list[inspect.Parameter]:
    return list(inspect.signature(source, eval_str=True).parameters.values())


def _flag(param: inspect.Parameter) -> str:
    """The option's long name: its first ``--`` declaration, else Typer's from its name."""
    for meta in get_args(param.annotation)[1:]:
        if isinstance(meta, OptionInfo):
            declared = [d for d in meta.param_decls or () if d.startswith("--")]
            if declared:
                return declared[0].split("/")[0]
    return "--" + param.name.rstrip("_").replace("_", "-")
