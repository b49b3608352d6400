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

    Called once per plugin when a registry is built, never per training step.
    """


@hookspec
def distill_discriminators(register: Callable[[type], None]) -> None:
    """Register module classes that a term builds by name from its config (``kind = "..."`` in its section),
    by calling ``register(ModuleClass)`` once for each.

    The core declares the hook and discovers the plugins that implement it (entry-point group ``distill``, like
    terms; a plugin may implement this hook alone); the term family that builds the modules collects them,
    checks them and resolves the kinds (``registry.pm.hook.distill_discriminators.get_hookimpls()``).
    """


def names() -> list[str]:
    """Every hook a plugin may implement."""
    module, pm = sys.modules[__name__], pluggy.PluginManager(PROJECT)
    return sorted(n for n in dir(module) if pm.parse_hookspec_opts(module, n) is not None)


def argnames(hook: str) -> list[str]:
    """The arguments the host passes to ``hook``."""
    return list(inspect.signature(getattr(sys.modules[__name__], hook)).parameters)


def signature(hook: str = HOOK) -> str:
    """How a plugin writes ``hook``: ``distill_loss_terms(register)``."""
    return f"{hook}({', '.join(argnames(hook))})"
