"""The ``distill-loss`` command line: check, plugins, schema, new-plugin, train, plot, compare, import-seed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill_core.util.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from distill_core.cli.main import main

__getattr__, __dir__ = lazy_exports(__name__, {"main": "main"})

__all__ = ["main"]
