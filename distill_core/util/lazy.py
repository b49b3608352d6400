"""Names a package exports from its submodules, imported on first access (PEP 562), so importing the package
(as discovery imports every plugin's entry-point module) stays cheap."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

from distill_core.util.gcpause import paused_gc

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` that import each name in ``where`` (name ->
    submodule, relative: ``{"MelLoss": "terms"}``) on first access and keep it, as an import at the top would.

    Usage, in a package's ``__init__.py``: ``__getattr__, __dir__ = lazy_exports(__name__, {...})``.
    """
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name in where:
            with paused_gc():  # a first import is a burst of allocations (classes, hooks), none of them garbage
                value = getattr(importlib.import_module(f".{where[name]}", package), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(where))

    return __getattr__, __dir__
