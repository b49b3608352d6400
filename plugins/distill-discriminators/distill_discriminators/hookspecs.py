"""The hook this distribution owns, ``distill_discriminators(register)``, and the registry of the discriminator
classes collected through it.

This distribution declares the hook (``distill_add_hookspecs``, as the core's registry builds); the core
discovers the plugins that implement it (entry-point group ``distill``, as for terms), and this module calls the
hook once, through pluggy, and checks what each plugin registers. This distribution's own
discriminators are always there, also with entry-point autoload off, and a kind among them resolves without
the core's registry: discovery itself builds this term's default config, so asking the core's registry for the
kinds then would wait on the discovery that asks.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from distill_core import hookimpl
from distill_core.config.converter import did_you_mean
from distill_core.registry.discovery import Registry, get_registry
from distill_core.registry.hookspecs import PROJECT

from .base import Discriminator

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def distill_discriminators(register: Callable[[type], None]) -> None:
    """Register module classes that the adversarial term builds by name from its config (``kind = "..."``), by
    calling ``register(ModuleClass)`` once for each (a ``Discriminator`` subclass with ``name`` and
    ``config_class``). A plugin may implement this hook alone, under the ``distill`` entry-point group."""


SELF = "distill-discriminators"
__all__ = ["DiscriminatorRegistry", "discriminators", "distill_discriminators", "hookimpl", "hookspec"]


class DiscriminatorRegistry:
    """Every discriminator class by name (its ``kind`` in a config), from the plugins the core discovered."""

    def __init__(self) -> None:
        self.classes: dict[str, type[Discriminator]] = {}
        self.sources: dict[str, str] = {}
        self.core: Registry | None = None  # the core registry whose plugins were collected

    def add_builtin(self) -> None:
        """This distribution's discriminators."""
        from . import builtin  # the hook of this distribution, imported here: builtin imports the classes

        builtin.distill_discriminators(register=lambda cls: self.add(cls, SELF))

    def collect(self, core: Registry) -> None:
        """Every plugin's ``distill_discriminators`` hook, in one pluggy call over the plugins the core discovered
        (this distribution's own classes are in already, under its name)."""
        self.core = core
        if core.pm.hook.distill_discriminators.has_spec():  # declared once this distribution's plugin is in
            core.call_register_hook("distill_discriminators", lambda plugin, cls, _target: self.add(cls, plugin))

    def add(self, cls: type[Discriminator], source: str) -> None:
        """One class, checked for what a config needs: a ``name`` and a ``config_class``."""
        name = getattr(cls, "name", None)
        if not (
            isinstance(name, str)
            and name
            and isinstance(cls, type)
            and issubclass(cls, Discriminator)
            and hasattr(cls, "config_class")
        ):
            raise TypeError(
                f"{source}: register() expects a Discriminator subclass with a name and a config_class, got {cls!r}"
            )
        if self.classes.get(name) is cls:  # one class registered again (this distribution's own, through the hook)
            return
        if name in self.classes:
            raise TypeError(f"discriminator name {name!r} is registered by {self.sources[name]} and {source}")
        self.classes[name], self.sources[name] = cls, source

    def get(self, kind: str) -> type[Discriminator]:
        """The class registered as ``kind`` (the other plugins' hooks run on the first kind not built in);
        KeyError naming the installed kinds."""
        if kind not in self.classes and self.core is not get_registry():
            self.collect(get_registry())
        if kind not in self.classes:
            raise KeyError(
                f"unknown discriminator kind {kind!r}{did_you_mean(kind, self.classes)} "
                f"(installed: {', '.join(sorted(self.classes))})"
            )
        return self.classes[kind]


_REGISTRY: DiscriminatorRegistry | None = None


def discriminators() -> DiscriminatorRegistry:
    """The process's registry: the built-in discriminators at once, the other plugins' on the first other kind
    (again after the core's registry is replaced)."""
    global _REGISTRY
    if _REGISTRY is None:
        registry = DiscriminatorRegistry()
        registry.add_builtin()
        _REGISTRY = registry
    return _REGISTRY
