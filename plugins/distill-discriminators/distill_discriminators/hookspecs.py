"""The hook a distribution implements to add discriminators, and the registry that collects them.

Proposed for the core as ``distill_discriminators(register)`` beside ``distill_loss_terms(register)``. Until the
core declares it, discriminator plugins list the module holding the hook under the entry-point group
``distill.discriminators`` (the core's own group checks that every hook it sees is one it knows).
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Callable

import pluggy

from distill_core import hookimpl
from distill_core.config import did_you_mean

from .base import Discriminator

GROUP = "distill.discriminators"
hookspec = pluggy.HookspecMarker("distill")
__all__ = ["GROUP", "DiscriminatorRegistry", "discriminators", "hookimpl", "hookspec"]


@hookspec
def distill_discriminators(register: Callable[[type[Discriminator]], None]) -> None:
    """Register discriminator classes by calling ``register(DiscriminatorClass)`` once for each."""


class DiscriminatorRegistry:
    """Every discriminator class by name (its ``kind`` in a config), from the installed entry points."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("distill")
        self.pm.add_hookspecs(sys.modules[__name__])
        self.classes: dict[str, type[Discriminator]] = {}
        self.sources: dict[str, str] = {}

    def load_entrypoints(self) -> None:
        """Register each installed plugin of the ``distill.discriminators`` group."""
        for ep in metadata.entry_points(group=GROUP):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else "?"
            self.register_plugin(ep.load(), f"{dist}:{ep.name}")

    def register_plugin(self, plugin: object, source: str) -> None:
        """Register a module with a ``distill_discriminators`` hook; a name taken twice is an error."""
        self.pm.register(plugin, name=source)
        self.pm.check_pending()
        for impl in self.pm.hook.distill_discriminators.get_hookimpls():
            if impl.plugin is plugin:
                impl.function(register=lambda cls: self.add(cls, source))

    def add(self, cls: type[Discriminator], source: str) -> None:
        """One class, checked for what a config needs: a ``name`` and a ``config_class``."""
        name = getattr(cls, "name", None)
        if not (isinstance(name, str) and name and isinstance(cls, type) and issubclass(cls, Discriminator)
                and hasattr(cls, "config_class")):
            raise TypeError(f"{source}: register() expects a Discriminator subclass with a name and a "
                            f"config_class, got {cls!r}")
        if name in self.classes and self.classes[name] is not cls:
            raise TypeError(f"discriminator name {name!r} is registered by {self.sources[name]} and {source}")
        self.classes[name], self.sources[name] = cls, source

    def get(self, kind: str) -> type[Discriminator]:
        """The class registered as ``kind``; KeyError naming the installed kinds."""
        if kind not in self.classes:
            raise KeyError(f"unknown discriminator kind {kind!r}{did_you_mean(kind, self.classes)} "
                           f"(installed: {', '.join(sorted(self.classes))})")
        return self.classes[kind]


_REGISTRY: DiscriminatorRegistry | None = None


def discriminators() -> DiscriminatorRegistry:
    """The process's registry, built once from the installed entry points."""
    global _REGISTRY
    if _REGISTRY is None:
        registry = DiscriminatorRegistry()
        registry.load_entrypoints()
        _REGISTRY = registry
    return _REGISTRY
