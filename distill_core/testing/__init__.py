"""The plugin test kit: ``check_term``, ``check_stateful``, ``check_discovery`` and the pytest fixtures.

The fixtures reach a test run only where it opts in (``pytest_plugins = ["distill_core.testing.plugin"]`` in a
conftest, or ``-p distill_core.testing.plugin``), so an unrelated pytest run never imports torch for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill_core.util.lazy import lazy_exports

_LAZY = {
    name: "kit"
    for name in (
        "BatchFactory",
        "FACTORY_SEED",
        "SYNC_METHODS",
        "check_discovery",
        "check_stateful",
        "check_term",
        "write_distribution",
    )
}
_LAZY.update({name: "plugin" for name in ("distill_registry", "register_term", "sync_counter")})

if TYPE_CHECKING:  # pragma: no cover
    from distill_core.testing.kit import (
        FACTORY_SEED,
        SYNC_METHODS,
        BatchFactory,
        check_discovery,
        check_stateful,
        check_term,
        write_distribution,
    )
    from distill_core.testing.plugin import distill_registry, register_term, sync_counter

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "BatchFactory",
    "FACTORY_SEED",
    "SYNC_METHODS",
    "check_discovery",
    "check_stateful",
    "check_term",
    "distill_registry",
    "register_term",
    "sync_counter",
    "write_distribution",
]
