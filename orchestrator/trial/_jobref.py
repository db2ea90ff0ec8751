"""Finding a spec's project folder and importing its ``module:function`` job."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from orchestrator.errors import SpecError, one_line

__all__ = ["JobFn", "load_job", "project_root"]

JobFn = Callable[[dict[str, Any], Any], Any]

_PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


def project_root(spec_path: str | Path) -> Path:
    """The nearest folder above the spec holding a project marker (else the spec's folder)."""
    start = Path(spec_path).resolve().parent
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in _PROJECT_MARKERS):
            return folder
    return start


def load_job(ref: str, *, search_path: Sequence[str | Path] = ()) -> JobFn:
    """Import ``module:function``, looking in ``search_path`` first; check it takes two args.

    Raises:
        SpecError: the module or function is missing, fails to import, or does not take
            ``(params, trial)``.
    """
    for folder in reversed([str(p) for p in search_path]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module_name, _, function_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        where = ", ".join(str(p) for p in search_path) or "PYTHONPATH"
        raise SpecError(f"job {ref!r}: no module {exc.name!r} (looked in {where})") from None
    except Exception as exc:
        raise SpecError(
            f"job {ref!r}: importing {module_name} failed: {one_line(exc, with_type=True)}"
        ) from None
    function = getattr(module, function_name, None)
    if function is None:
        raise SpecError(f"job {ref!r}: module {module_name} has no attribute {function_name!r}")
    if not callable(function):
        raise SpecError(f"job {ref!r}: {function_name} is not a function")
    try:
        inspect.signature(function).bind({}, None)
    except TypeError:
        raise SpecError(
            f"job {ref!r}: must accept (params, trial), got {function_name}"
            f"{inspect.signature(function)}"
        ) from None
    except ValueError:  # builtins without a signature: trust them
        pass
    return cast(JobFn, function)
