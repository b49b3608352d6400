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
from importlib import metadata
from typing import Any

import attrs
import pluggy

from distill_core import hookimpl
from distill_core.config.converter import did_you_mean
from distill_core.registry.discovery import Registry, get_registry
from distill_core.registry.entries import BrokenPlugin, Provenance
from distill_core.registry.hookspecs import PROJECT
from distill_core.registry.sections import PluginSection, SectionEntry, call_isolated

from .base import CommonOptions, Discriminator

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def distill_discriminators(register: Callable[[type], None]) -> None:
    """Register module classes that the adversarial term builds by name from its config (``kind = "..."``), by
    calling ``register(ModuleClass)`` once for each (a ``Discriminator`` subclass with ``name`` and
    ``config_class``). A plugin may implement this hook alone, under the ``distill`` entry-point group."""


SELF = "distill-discriminators"
HOOK = "distill_discriminators"
__all__ = [
    "DiscriminatorRegistry",
    "discriminators",
    "distill_discriminators",
    "hookimpl",
    "hookspec",
    "listing_section",
    "spec_schema",
]


class DiscriminatorRegistry:
    """Every discriminator class by name (its ``kind`` in a config), from the plugins the core discovered."""

    def __init__(self) -> None:
        self.classes: dict[str, type[Discriminator]] = {}
        self.sources: dict[str, str] = {}
        self.provenances: dict[str, Provenance] = {}  # kind -> the distribution that registered it
        self.broken: list[BrokenPlugin] = []  # plugins whose hook raised, or registered what is no discriminator
        self.core: Registry | None = None  # the core registry whose plugins were collected

    def add_builtin(self) -> None:
        """This distribution's discriminators."""
        from . import builtin  # the hook of this distribution, imported here: builtin imports the classes

        builtin.distill_discriminators(register=lambda cls: self.add(cls, SELF))

    def collect(self, core: Registry) -> None:
        """Every plugin's ``distill_discriminators`` hook, in one pluggy call over the plugins the core discovered
        (this distribution's own classes are in already, under its name). A plugin whose hook raises, or that
        registers a class a config cannot build, is recorded in ``broken`` (listed by ``distill-loss plugins``,
        named when a config asks for a kind not installed); the others' kinds are collected."""
        self.core = core
        self.broken = []
        if not core.pm.hook.distill_discriminators.has_spec():  # declared once this distribution's plugin is in
            return

        def receive(plugin: str, cls: Any, _target: Any) -> None:
            provenance = core.provenance_of(plugin)
            try:
                self.add(cls, plugin, provenance)
            except TypeError as exc:
                self.broken.append(BrokenPlugin(plugin.partition(":")[2] or plugin, provenance, f"{HOOK}: {exc}"))

        self.broken += call_isolated(core, HOOK, receive)

    def add(self, cls: type[Discriminator], source: str, provenance: Provenance | None = None) -> None:
        """One class, checked for what a config needs: a ``name``, and a ``config_class`` (attrs, inheriting
        ``CommonOptions``) that builds with its defaults; TypeError says what is wrong."""
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
        options = cls.config_class
        if not (isinstance(options, type) and attrs.has(options) and issubclass(options, CommonOptions)):
            raise TypeError(
                f"{source}: {cls.__qualname__}.config_class must be an attrs class inheriting "
                f"distill_discriminators.CommonOptions, got {options!r}"
            )
        try:
            options()
        except Exception as exc:  # any failure here is the plugin's, reported with its class
            raise TypeError(
                f"{source}: {cls.__qualname__}.config_class {options.__name__} cannot be built with its "
                f"defaults: {type(exc).__name__}: {exc}"
            ) from exc
        if self.classes.get(name) is cls:  # one class registered again (this distribution's own, through the hook)
            return
        if name in self.classes:
            raise TypeError(f"discriminator name {name!r} is registered by {self.sources[name]} and {source}")
        self.classes[name], self.sources[name] = cls, source
        if provenance is not None:
            self.provenances[name] = provenance

    def provenance(self, kind: str) -> Provenance:
        """The distribution (and version, entry point) that registered ``kind``."""
        self.get(kind)
        found = self.provenances.get(kind)
        if found is not None:
            return found
        try:
            version = metadata.version(SELF)
        except metadata.PackageNotFoundError:  # run from a source tree that is not installed
            version = ""
        return Provenance(SELF, version)

    def get(self, kind: str) -> type[Discriminator]:
        """The class registered as ``kind`` (the other plugins' hooks run on the first kind not built in);
        KeyError naming the installed kinds."""
        if kind not in self.classes and self.core is not get_registry():
            self.collect(get_registry())
        if kind not in self.classes:
            broken = f"; broken discriminator plugins: {'; '.join(map(str, self.broken))}" if self.broken else ""
            raise KeyError(
                f"unknown discriminator kind {kind!r}{did_you_mean(kind, self.classes)} "
                f"(installed: {', '.join(sorted(self.classes))}){broken}"
            )
        return self.classes[kind]

    def refreshed(self) -> DiscriminatorRegistry:
        """This registry with every plugin's kinds in, from the core's current registry."""
        if self.core is not get_registry():
            self.collect(get_registry())
        return self


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


TITLE = "discriminator kinds (the kind of each [[terms.adversarial.discriminators]] entry)"


def listing_section() -> PluginSection:
    """The ``discriminators`` section of ``distill-loss plugins``: every kind with its distribution, version,
    module and options, and the discriminator plugins that are BROKEN."""
    registry = discriminators().refreshed()
    entries = tuple(
        SectionEntry(name, cls, cls.config_class, registry.provenances.get(name))  # None: this distribution's
        for name, cls in sorted(registry.classes.items())
    )
    return PluginSection("discriminators", TITLE, entries, tuple(registry.broken))


def spec_schema(base: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one ensemble entry as a tagged union by ``kind``: for each installed kind, ``base``
    (the entry's own schema) with ``kind`` fixed to it and ``options`` typed by that kind's config class."""
    from distill_core.loss.schema import class_schema  # the core's schema writer, wanted only by `schema`

    variants = []
    for name, cls in sorted(discriminators().refreshed().classes.items()):
        variant = {**base, "properties": dict(base["properties"])}
        variant["title"] = f"{base.get('title', 'discriminator')} ({name})"
        variant["properties"]["kind"] = {"const": name}
        variant["properties"]["options"] = class_schema(cls.config_class)
        variant["required"] = sorted({*base.get("required", ()), "kind"})
        variants.append(variant)
    kinds = ", ".join(v["properties"]["kind"]["const"] for v in variants)
    return {"oneOf": variants, "description": f"one discriminator of the ensemble, tagged by its kind ({kinds})"}
