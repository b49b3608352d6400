"""Which plugin a hook call came from: pluggy's hook implementations, found on the stack by code object."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

import pluggy

from distill_core.registry import hookspecs


def implementations(impls: Iterable[Any]) -> dict[int, str]:
    """Each hook implementation's code object (by identity: equal code in two plugins compares equal) -> its
    plugin's name in the manager."""
    return {id(impl.function.__code__): impl.plugin_name for impl in impls}


def calling_plugin(frame: Any, impl_of: dict[int, str]) -> str | None:
    """The plugin whose hook implementation is on the stack above ``frame`` (the innermost), or None."""
    while frame is not None:
        label = impl_of.get(id(frame.f_code))
        if label is not None:
            return label
        frame = frame.f_back
    return None


def failing_plugin(tb: TracebackType | None, impl_of: dict[int, str]) -> str | None:
    """The plugin whose hook implementation raised: the innermost implementation frame in the traceback."""
    found = None
    while tb is not None:
        found = impl_of.get(id(tb.tb_frame.f_code), found)
        tb = tb.tb_next
    return found


def term_impls(pm: pluggy.PluginManager, plugin: Any) -> list[Any]:
    """One plugin's implementations of the term hook."""
    return [i for i in getattr(pm.hook, hookspecs.HOOK).get_hookimpls() if i.plugin is plugin]


def only_wraps(pm: pluggy.PluginManager, plugin: Any) -> bool:
    """A plugin whose term hooks are all wrappers (around the others' calls) is not expected to register terms."""
    impls = term_impls(pm, plugin)
    return bool(impls) and all(i.wrapper or i.hookwrapper for i in impls)
