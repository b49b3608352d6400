"""The registry of discriminator classes, collected through the core's hook ``distill_discriminators(register)``.

The core declares the hook and discovers the plugins that implement it (entry-point group ``distill``, as for
terms); this module runs each plugin's hook and checks what it registers. This distribution's own
discriminators are always there, also with entry-point autoload off, and a kind among them resolves without
the core's registry: discovery itself builds this term's default config, so asking the core's registry for the
kinds then would wait on the discovery that asks.
"""

from __future__ import annotations

from distill_core import hookimpl
from distill_core.config.converter import did_you_mean
from distill_core.registry.discovery import Registry, get_registry

from .base import Discriminator

SELF = "distill-discriminators"
__all__ = ["DiscriminatorRegistry", "discriminators", "hookimpl"]


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
        """Every other plugin's ``distill_discriminators`` hook, as the core discovered them."""
        from . import builtin  # its hook is already in: add_builtin

        self.core = core
        for impl in core.pm.hook.distill_discriminators.get_hookimpls():
            if impl.function is builtin.distill_discriminators:
                continue
            source = core.pm.get_name(impl.plugin) or repr(impl.plugin)
            impl.function(register=lambda cls, source=source: self.add(cls, source))

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
        if name in self.classes and self.classes[name] is not cls:
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
