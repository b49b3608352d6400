"""Discovery: entry points in group ``distill``, allow/deny switches, failure isolation, provenance.

The registry owns every term name. Plugins hand it classes through ``register``; collisions, broken
plugins and the distribution behind each term are recorded here and nowhere else.
"""

from __future__ import annotations

import keyword
import os
import re
import threading
from importlib import metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .terms import LossTerm

STRICT_ENV = "DISTILL_STRICT_PLUGINS"
NO_AUTOLOAD_ENV = "DISTILL_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_ENV = "DISTILL_PLUGINS"
IN_PROCESS = "<in-process>"


class PluginError(Exception):
    """A plugin could not be loaded or registered, or two plugins claim one term name."""


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
class BrokenPlugin:
    """A plugin that failed to import or register, with the message every later use repeats."""

    name: str
    provenance: Provenance
    error: str

    def __str__(self) -> str:
        return f"{self.name} ({self.provenance}): {self.error}"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _flag(env: str) -> bool:
    return os.environ.get(env, "").strip().lower() not in ("", "0", "false", "no")


def validate_term_class(cls: Any) -> None:
    """Check a class against the plugin contract; raise PluginError saying what is wrong."""
    from .config import converter

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
        config_class()  # defaults must construct
        converter.get_structure_hook(config_class)  # and cattrs must be able to structure it
    except Exception as exc:  # any failure here is the plugin's, reported with its class
        raise PluginError(f"{what}.config_class {config_class.__name__} cannot be structured by cattrs "
                          f"with its defaults: {type(exc).__name__}: {exc}") from exc
    requires = getattr(cls, "requires", None)
    if not (isinstance(requires, tuple) and all(isinstance(k, str) for k in requires)):
        raise PluginError(f"{what}.requires must be a tuple of str batch keys, got {requires!r}")


class Registry:
    """Every known term by name, the plugins that failed, and the pluggy manager behind them."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._terms: dict[str, TermInfo] = {}
        self._broken: list[BrokenPlugin] = []
        self._conflicts: dict[str, list[TermInfo]] = {}
        self._broken_terms: dict[str, BrokenPlugin] = {}
        self.strict = _flag(STRICT_ENV)

    # --- registration -----------------------------------------------------------------------------
    def register_plugin(self, plugin: ModuleType | object, name: str | None = None,
                        provenance: Provenance | None = None) -> list[str]:
        """Register a module or object with ``@hookimpl`` functions; return the term names it added.

        Failures raise PluginError (callers that discover entry points isolate them).
        """
        provenance = provenance or Provenance(entry_point=str(name or getattr(plugin, "__name__", "")))
        self.pm.register(plugin, name=name or getattr(plugin, "__name__", None) or repr(plugin))
        try:
            self.pm.check_pending()  # a misspelt hook name is an error, not a silent no-op
            collected: list[type[LossTerm]] = []
            for impl in self.pm.hook.distill_loss_terms.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=collected.append)
            for cls in collected:
                validate_term_class(cls)
        except BaseException:
            self.pm.unregister(plugin)
            raise
        for cls in collected:
            self._add(TermInfo(cls.name, cls, provenance))
        return [cls.name for cls in collected]

    def register_term(self, cls: type[LossTerm], provenance: Provenance | None = None) -> None:
        """Register one term class directly (notebooks and tests)."""
        validate_term_class(cls)
        self._add(TermInfo(cls.name, cls, provenance or Provenance()))

    def _add(self, info: TermInfo) -> None:
        if info.name in self._conflicts:
            self._conflicts[info.name].append(info)
            return
        existing = self._terms.get(info.name)
        if existing is not None and existing.cls is not info.cls:
            del self._terms[info.name]
            self._conflicts[info.name] = [existing, info]
            if self.strict:
                raise PluginError(self._conflict_message(info.name))
            return
        self._terms[info.name] = info

    def _conflict_message(self, name: str) -> str:
        who = " and ".join(f"{i.provenance} ({i.cls.__module__}.{i.cls.__qualname__})"
                           for i in _by_provenance(self._conflicts[name]))
        return (f"term name {name!r} is registered by more than one plugin: {who}; "
                f"uninstall one, or choose with {ALLOW_ENV}=<distribution>")

    # --- entry points ------------------------------------------------------------------------------
    def load_entrypoints(self, group: str = hookspecs.PROJECT) -> None:
        """Load every entry point of ``group`` that the environment switches allow, isolating failures."""
        if _flag(NO_AUTOLOAD_ENV):
            return
        allow = {_normalise(n) for n in os.environ.get(ALLOW_ENV, "").split(",") if n.strip()}
        seen: set[tuple[str, str]] = set()
        for ep in metadata.entry_points(group=group):
            dist = ep.dist
            dist_name = dist.metadata["Name"] if dist is not None else IN_PROCESS
            version = dist.version if dist is not None else ""
            key = (dist_name, ep.name)
            if key in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add(key)
            if allow and _normalise(ep.name) not in allow and _normalise(dist_name) not in allow:
                continue
            provenance = Provenance(dist_name, version, f"{ep.name} = {ep.value}")
            try:
                self.register_plugin(ep.load(), name=f"{dist_name}:{ep.name}", provenance=provenance)
            except Exception as exc:  # isolate: one broken plugin never stops the others
                broken = BrokenPlugin(ep.name, provenance, f"{type(exc).__name__}: {exc}")
                self._broken.append(broken)
                if self.strict:
                    raise PluginError(f"plugin {broken}") from exc

    # --- lookup -------------------------------------------------------------------------------------
    @property
    def terms(self) -> dict[str, TermInfo]:
        """Usable terms by name (conflicting names excluded)."""
        return dict(self._terms)

    @property
    def broken(self) -> list[BrokenPlugin]:
        return list(self._broken)

    @property
    def conflicts(self) -> dict[str, list[TermInfo]]:
        return {k: _by_provenance(v) for k, v in self._conflicts.items()}

    def get(self, name: str) -> TermInfo:
        """The term registered as ``name``, or an error that says why it is not usable."""
        if name in self._terms:
            return self._terms[name]
        if name in self._conflicts:
            raise UnknownTermError(self._conflict_message(name))
        from .recipe import PROVIDERS

        candidates = {_normalise(name), _normalise(f"distill-{name}"), _normalise(PROVIDERS.get(name, name))}
        for broken in self._broken:
            if {_normalise(broken.name), _normalise(broken.provenance.distribution)} & candidates:
                raise UnknownTermError(f"term {name!r} comes from a plugin that failed to load: {broken}")
        installed = ", ".join(sorted(self._terms)) or "none"
        hint = ""
        if name in PROVIDERS:
            hint = f"; it is provided by the distribution {PROVIDERS[name]!r} (pip install {PROVIDERS[name]})"
        from .config import did_you_mean

        raise UnknownTermError(f"unknown term {name!r}{did_you_mean(name, self._terms)}{hint}; "
                               f"installed terms: {installed}")


def _by_provenance(infos: list[TermInfo]) -> list[TermInfo]:
    """A stable order for messages and listings, whatever the order of sys.path."""
    return sorted(infos, key=lambda i: str(i.provenance))


_default: Registry | None = None
_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry: entry points are scanned on first use, once, then cached."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                registry = Registry()
                registry.load_entrypoints()
                _default = registry
    return _default


def reset_registry(registry: Registry | None = None) -> Registry | None:
    """Replace the cached registry (tests, or after pip installs a plugin); return the old one."""
    global _default
    with _lock:
        old, _default = _default, registry
    return old


def register(plugin: ModuleType | object | type, name: str | None = None) -> list[str]:
    """Register a plugin module/object, or a LossTerm class, in the process-wide registry."""
    registry = get_registry()
    if isinstance(plugin, type) and issubclass(plugin, LossTerm):
        registry.register_term(plugin)
        return [plugin.name]
    return registry.register_plugin(plugin, name=name)
