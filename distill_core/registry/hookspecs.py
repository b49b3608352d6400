"""The hooks a distill plugin implements: pluggy project name ``distill``."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable

import pluggy

PROJECT = "distill"
HOOK = "distill_loss_terms"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def distill_loss_terms(register: Callable[..., None]) -> None:
    """Register loss-term classes by calling ``register(TermClass)`` once for each, or, so that discovery need
    not import them, ``register("term_name", "package.module:TermClass")``: the module is imported and the class
    checked when the term is first used (a failure then names the term and the plugin, as a broken plugin).

    Called once when a registry is built (one pluggy hook call over every plugin), never per training step.
    """


@hookspec(historic=True)
def distill_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Declare a plugin's own hooks with ``pluginmanager.add_hookspecs(module)``, as ``pytest_addhooks`` does: a
    plugin whose term builds modules that other plugins provide (e.g. discriminators by ``kind``) owns that hook.

    Called for each plugin as it is registered, before any hook of the other plugins is checked.
    """


@hookspec
def distill_plugin_sections(register: Callable[..., None]) -> None:
    """Add a section to ``distill-loss plugins`` (and its ``--json``) beside the terms, by calling
    ``register(PluginSection(name, title, entries, broken))`` (``distill_core.registry.sections``): e.g. the
    module kinds a plugin's term builds by name, from the plugins that implement a hook it declared, with their
    distributions, versions, options and the BROKEN ones.

    Called once when the listing is asked for (one pluggy hook call over every plugin), never when a loss is
    built; a plugin whose implementation raises is listed as broken, the others' sections still are.
    """


def names(pm: pluggy.PluginManager | None = None) -> list[str]:
    """Every hook a plugin may implement: the core's, and those ``pm``'s plugins declared."""
    module = sys.modules[__name__]
    own = {n for n in dir(module) if pluggy.PluginManager(PROJECT).parse_hookspec_opts(module, n) is not None}
    if pm is not None:
        own |= {n for n, caller in vars(pm.hook).items() if isinstance(caller, pluggy.HookCaller) and caller.has_spec()}
    return sorted(own)


def argnames(hook: str, pm: pluggy.PluginManager | None = None) -> list[str]:
    """The arguments the host passes to ``hook`` (one of the core's, or one that ``pm``'s plugins declared)."""
    caller = getattr(pm.hook, hook, None) if pm is not None else None
    if isinstance(caller, pluggy.HookCaller) and caller.spec is not None:
        return list(caller.spec.argnames)
    return list(inspect.signature(getattr(sys.modules[__name__], hook)).parameters)


def signature(hook: str = HOOK) -> str:
    """How a plugin writes ``hook``: ``distill_loss_terms(register)``."""
    return f"{hook}({', '.join(argnames(hook))})"
