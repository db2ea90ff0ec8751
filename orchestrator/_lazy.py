"""Names a package exports but imports on first use (PEP 562), so importing it stays light."""

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, origins: Mapping[str, str]) -> Callable[[str], Any]:
    """Build the module ``__getattr__`` of a package whose names are imported on first use.

    Args:
        package: The package's ``__name__``.
        origins: Each lazily exported name and the module that defines it.

    Returns:
        The function to bind to the package's ``__getattr__``: it imports a name from its
        module, keeps it in the package and returns it; any other name raises AttributeError.
    """

    def __getattr__(name: str) -> Any:
        if name not in origins:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(origins[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
