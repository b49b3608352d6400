"""Listing sections: what a plugin adds to ``distill-loss plugins`` beside the terms (e.g. the module kinds its
term builds by name, which other plugins register through a hook it owns).

A plugin implements ``distill_plugin_sections(register)`` and calls ``register(PluginSection(...))``; the
registry calls the hook once, through pluggy, when the listing is asked for (never when a loss is built). A
plugin whose hook raises is recorded as broken and the others' sections are still listed.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import Any

import attrs

from distill_core.registry.discovery import Registry
from distill_core.registry.entries import BrokenPlugin, Provenance
from distill_core.registry.hookcalls import failing_plugin, implementations

__all__ = ["SECTIONS_HOOK", "PluginSection", "SectionEntry", "call_isolated", "plugin_sections"]

SECTIONS_HOOK = "distill_plugin_sections"


@attrs.frozen
class SectionEntry:
    """One row of a section: a name a config uses, the class behind it, the attrs class of its options, and
    where it came from (None: the distribution of the plugin that registered the section)."""

    name: str
    cls: type
    options: type | None = None
    provenance: Provenance | None = None

    @property
    def module(self) -> str:
        return self.cls.__module__


@attrs.frozen
class PluginSection:
    """A section of the plugin listing: ``name`` keys it in ``--json`` (an identifier), ``title`` heads it in
    the text listing; its entries, and the plugins that failed to provide one (listed as BROKEN)."""

    name: str
    title: str
    entries: tuple[SectionEntry, ...] = ()
    broken: tuple[BrokenPlugin, ...] = ()


def _label_name(label: str) -> str:
    """A plugin's name for a BROKEN line: its entry point's (``dist:entry``), as discovery names it."""
    return label.partition(":")[2] or label


def call_isolated(registry: Registry, hook: str, receive: Callable[[str, Any, Any], None]) -> list[BrokenPlugin]:
    """One ``pm.hook.<hook>(register=...)`` call over every plugin of ``registry``, each ``register(obj,
    target)`` reaching ``receive(plugin, obj, target)``. A plugin whose implementation raises is returned as
    broken, and the call runs again over the others (nothing of the failed call is received)."""
    labels = {name for name, _ in registry.pm.list_name_plugin()}
    broken: list[BrokenPlugin] = []
    while True:
        impl_of = implementations(getattr(registry.pm.hook, hook).get_hookimpls())
        received: list[tuple[str, Any, Any]] = []
        try:
            # discovery's one way to call a register-style hook over some plugins (credit, wrappers, tracing)
            registry._call_hook(hook, lambda *call, into=received: into.append(call), labels)
        except Exception as exc:  # isolate: one broken plugin never hides the others
            label = failing_plugin(exc.__traceback__, impl_of)
            if label is None or label not in labels:
                raise
            labels.discard(label)
            error = f"{hook}: {type(exc).__name__}: {exc}"
            broken.append(BrokenPlugin(_label_name(label), registry.provenance_of(label), error))
            continue
        for call in received:
            receive(*call)
        return broken


def plugin_sections(registry: Registry) -> tuple[list[PluginSection], list[BrokenPlugin]]:
    """Every section the plugins register, in name order, each entry's provenance filled in; and the plugins
    whose section hook failed or registered something else than a PluginSection."""
    sections: dict[str, PluginSection] = {}
    owners: dict[str, str] = {}
    broken: list[BrokenPlugin] = []

    def receive(label: str, section: Any, target: Any) -> None:
        provenance = registry.provenance_of(label)
        problem = _problem(section, target, owners, registry)
        if problem:
            broken.append(BrokenPlugin(_label_name(label), provenance, f"{SECTIONS_HOOK}: {problem}"))
            return
        entries = tuple(
            e if e.provenance is not None else attrs.evolve(e, provenance=provenance) for e in section.entries
        )
        sections[section.name] = attrs.evolve(section, entries=entries)
        owners[section.name] = label

    broken += call_isolated(registry, SECTIONS_HOOK, receive)
    return [sections[name] for name in sorted(sections)], broken


def _problem(section: Any, target: Any, owners: dict[str, str], registry: Registry) -> str:
    """'' for a section the listing can show; else what is wrong with it, in a sentence."""
    if target is not None or not isinstance(section, PluginSection):
        return f"register() expects one PluginSection (distill_core.registry.sections), got {section!r}"
    if not (section.name.isidentifier() and not keyword.iskeyword(section.name)):
        return f"a section's name must be a Python identifier string, got {section.name!r}"
    if section.name in owners:
        return f"section {section.name!r} is registered by {registry.provenance_of(owners[section.name])} as well"
    bad = [e for e in section.entries if not isinstance(e, SectionEntry)]
    if bad:
        return f"section {section.name!r}: entries must be SectionEntry objects, got {bad[0]!r}"
    for entry in section.entries:
        if entry.options is None:
            continue
        if not attrs.has(entry.options):
            return f"section {section.name!r}: {entry.name!r}'s options must be an attrs class, got {entry.options!r}"
        try:
            entry.options()  # the listing shows each option's default
        except Exception as exc:  # any failure here is the plugin's, reported with its entry
            return (
                f"section {section.name!r}: {entry.name!r}'s options {entry.options.__name__} cannot be built "
                f"with their defaults: {type(exc).__name__}: {exc}"
            )
    return ""
