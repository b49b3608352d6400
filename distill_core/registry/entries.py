"""What the registry holds: a term class or a reference to one, where it came from, and the plugin contract's
checks; the errors discovery raises."""

from __future__ import annotations

import importlib
import keyword
from typing import Any

import attrs

from distill_core.registry.provenance import IN_PROCESS
from distill_core.terms.base import LossTerm

__all__ = [
    "BrokenPlugin",
    "NoTermsError",
    "PluginError",
    "Provenance",
    "TermInfo",
    "TermReference",
    "UnknownTermError",
    "identity",
    "reference",
    "validate_term_class",
]


class PluginError(Exception):
    """A plugin could not be loaded or registered, or two plugins claim one term name."""


class NoTermsError(PluginError):
    """A plugin's hook registered no term: the hook is missing, unmarked, or never calls ``register``."""


class UnknownTermError(LookupError):
    """A config or call named a term that no installed plugin provides."""


@attrs.frozen
class Provenance:
    """Where a term came from: the distribution, its version and the entry point (or in-process)."""

    distribution: str = IN_PROCESS
    version: str = ""
    entry_point: str = ""

    def __str__(self) -> str:
        return f"{self.distribution}=={self.version}" if self.version else self.distribution


@attrs.frozen
class TermInfo:
    """A registered term class and its provenance."""

    name: str
    cls: type[LossTerm]
    provenance: Provenance

    @property
    def config_class(self) -> type:
        return self.cls.config_class

    @property
    def module(self) -> str:
        return self.cls.__module__


@attrs.frozen
class TermReference:
    """A term registered by name and ``module:Class``: its module is imported, and the class checked, on first use."""

    name: str
    target: str
    provenance: Provenance

    def load(self) -> Any:
        """The class ``target`` names (importing its module)."""
        module, _, qualname = self.target.partition(":")
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        return found


def identity(entry: TermInfo | TermReference) -> str:
    """``module:Class`` of a registered term, loaded or not: one class registered twice is no conflict."""
    if isinstance(entry, TermReference):
        return entry.target
    return f"{entry.cls.__module__}:{entry.cls.__qualname__}"


@attrs.frozen
class BrokenPlugin:
    """A plugin that failed to import or register, with the message every later use repeats."""

    name: str
    provenance: Provenance
    error: str

    def __str__(self) -> str:
        return f"{self.name} ({self.provenance}): {self.error}"


def validate_term_class(cls: Any) -> None:
    """Check a class against the plugin contract; raise PluginError saying what is wrong."""
    what = getattr(cls, "__qualname__", repr(cls))
    if not (isinstance(cls, type) and issubclass(cls, LossTerm)):
        raise PluginError(f"register() expects a LossTerm subclass, got {what!r}")
    name = getattr(cls, "name", None)
    if not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)):
        raise PluginError(f"{what}.name must be a Python identifier string, got {name!r}")
    config_class = getattr(cls, "config_class", None)
    if not (isinstance(config_class, type) and attrs.has(config_class)):
        raise PluginError(f"{what}.config_class must be an attrs class, got {config_class!r}")
    if "weight" not in attrs.fields_dict(config_class):
        raise PluginError(f"{what}.config_class {config_class.__name__} has no 'weight' field")
    try:
        config_class()  # defaults must construct; cattrs makes its structure hook on first use, not here
    except Exception as exc:  # any failure here is the plugin's, reported with its class
        raise PluginError(
            f"{what}.config_class {config_class.__name__} cannot be built "
            f"with its defaults: {type(exc).__name__}: {exc}"
        ) from exc
    requires = getattr(cls, "requires", None)
    if not (isinstance(requires, tuple) and all(isinstance(k, str) for k in requires)):
        raise PluginError(f"{what}.requires must be a tuple of str batch keys, got {requires!r}")


def _dotted(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def reference(name: Any, target: Any, provenance: Provenance) -> TermReference:
    """``register(name, "module:Class")``'s entry, checked for form; PluginError says what is wrong."""
    if target is None:
        raise PluginError(
            f"register({name!r}): expected a LossTerm subclass, or a term's name and where its class "
            f"lives as 'package.module:ClassName'"
        )
    if not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)):
        raise PluginError(f"register({name!r}, {target!r}): a term's name must be a Python identifier string")
    module, colon, qualname = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not (colon and _dotted(module) and _dotted(qualname)):
        raise PluginError(
            f"register({name!r}, {target!r}): expected where the term's class lives as "
            f"'package.module:ClassName', as an entry point writes it"
        )
    return TermReference(name, target, provenance)
