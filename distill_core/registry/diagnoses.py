"""Diagnoses for a plugin that registers nothing, does not match a hook's spec, or sits in a look-alike group:
each says which of the usual causes applies and what to write instead."""

from __future__ import annotations

import functools
import inspect
import sys
from importlib import metadata
from typing import Any

import pluggy

from distill_core.config.converter import did_you_mean
from distill_core.registry import hookspecs
from distill_core.registry.entries import TermInfo, TermReference
from distill_core.registry.provenance import normalise


def lookalike_group_hint(name: str) -> str:
    """'' or a note that an installed distribution declares ``name`` in an entry-point group named like ours
    (``distill.terms``, ``distill_loss``): discovery reads only the group ``distill``."""
    found = _lookalike_entry_points(tuple(sys.path)).get(name)
    if found is None:
        return ""
    dist, group = found
    return (
        f"; the installed distribution {dist} declares {name!r} in the entry-point group "
        f"{group!r}, named like ours: terms are found only in the group {hookspecs.PROJECT!r} "
        f"([project.entry-points.{hookspecs.PROJECT}] in its pyproject.toml)"
    )


@functools.lru_cache(maxsize=4)
def _lookalike_entry_points(path: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Entry-point name -> (distribution, group) for the groups named like ours, read once per ``sys.path``
    (a file naming thousands of unknown terms asks once, not once per term)."""
    out: dict[str, tuple[str, str]] = {}
    for found in metadata.distributions(path=list(path)):
        for ep in found.entry_points:
            if ep.group == hookspecs.PROJECT or ep.group.endswith(".recipes"):  # ours
                continue
            if normalise(ep.group).startswith(normalise(hookspecs.PROJECT)):
                out.setdefault(ep.name, (found.metadata["Name"], ep.group))
    return out


def plugin_label(plugin: Any) -> str:
    return str(getattr(plugin, "__name__", None) or type(plugin).__name__)


def implements_another_hook(pm: pluggy.PluginManager, plugin: Any) -> bool:
    """A plugin with no terms that implements another of our hooks (modules terms build) is not broken."""
    return any(
        impl.plugin is plugin
        for name in hookspecs.names(pm)
        if name not in (hookspecs.HOOK, "distill_add_hookspecs")
        for impl in getattr(pm.hook, name).get_hookimpls()
    )


def no_terms_hint(plugin: Any, impls: list[Any]) -> str:
    """Which of the usual causes applies, and what to check."""
    hook, where = hookspecs.HOOK, plugin_label(plugin)
    if impls and any("register" not in i.argnames for i in impls):
        return f"{where}.{hook} takes no 'register' argument; expected {hookspecs.signature()}"
    if impls:
        return f"{where}.{hook} ran but never called register(); call register(YourTerm) once for each LossTerm class"
    if callable(getattr(plugin, hook, None)):
        return (
            f"{where}.{hook} is not marked as a hook; put @hookimpl (from distill_core import hookimpl) "
            f"on the line above 'def {hook}(register)'"
        )
    callables = [n for n in dir(plugin) if not n.startswith("_") and callable(getattr(plugin, n, None))]
    return (
        f"{where} has no {hook} hook{did_you_mean(hook, callables)}; check that the entry point names the "
        f"module that defines '@hookimpl def {hook}(register)' (a package must import it in __init__.py)"
    )


def hook_mismatch(pm: pluggy.PluginManager, plugin: Any, label: str, exc: pluggy.PluginValidationError) -> str:
    """pluggy's validation error, said with the hook a plugin should have written."""
    expected = hookspecs.signature()
    specs = hookspecs.names(pm)
    for attr in dir(plugin):
        if pm.parse_hookimpl_opts(plugin, attr) is not None:
            function = getattr(plugin, attr)
            if attr not in specs:
                return (
                    f"plugin {label!r} defines unknown hook {attr!r}{did_you_mean(attr, specs)} "
                    f"(the hook is {expected})"
                )
            params = list(inspect.signature(function).parameters)
            extra = [p for p in params if p not in hookspecs.argnames(attr, pm)]
            if extra:
                return (
                    f"plugin {label!r}: hook {attr}({', '.join(params)}) takes "
                    f"{', '.join(map(repr, extra))}, which the hook does not pass; expected {expected}"
                )
    return f"plugin {label!r}: {' '.join(str(exc).split())}; expected {expected}"


def by_provenance(infos: list[TermInfo | TermReference]) -> list[TermInfo | TermReference]:
    """A stable order for messages and listings, whatever the order of sys.path."""
    return sorted(infos, key=lambda i: str(i.provenance))
