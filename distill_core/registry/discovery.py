"""Discovery: entry points in group ``distill``, allow/deny switches, failure isolation.

The registry owns every term name. Plugins hand it classes through ``register``, or a term's name and where
its class lives (``register("name", "package.module:Class")``), imported when the term is first used;
collisions, broken plugins and the distribution behind each term are recorded here and nowhere else. What a
run remembers about its terms (locks, pins) is ``provenance``'s.
"""

from __future__ import annotations

import importlib
import inspect
import keyword
import os
import threading
import warnings
from importlib import metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from distill_core.config.converter import did_you_mean
from distill_core.registry import hookspecs
from distill_core.registry.entrypoints import declared_entry_points, forget
from distill_core.registry.provenance import (
    IN_PROCESS,
    TermOrigin,
    last_origin,
    normalise,
    provider,
    term_candidates,
    term_origins,
)
from distill_core.terms.base import LossTerm
from distill_core.util.gcpause import paused_gc

__all__ = [
    "PluginError",
    "NoTermsError",
    "UnknownTermError",
    "Provenance",
    "TermInfo",
    "TermReference",
    "BrokenPlugin",
    "Registry",
    "get_registry",
    "reset_registry",
    "register",
    "validate_term_class",
    "term_origins",
]

STRICT_ENV = "DISTILL_STRICT_PLUGINS"
NO_AUTOLOAD_ENV = "DISTILL_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_ENV = "DISTILL_PLUGINS"


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

    def load(self) -> type:
        """The class ``target`` names (importing its module)."""
        module, _, qualname = self.target.partition(":")
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        return found


def _identity(entry: TermInfo | TermReference) -> str:
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


def _flag(env: str) -> bool:
    return os.environ.get(env, "").strip().lower() not in ("", "0", "false", "no")


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


class Registry:
    """Every known term by name, the plugins that failed, and the pluggy manager behind them."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._terms: dict[str, TermInfo | TermReference] = {}  # a reference until its first use
        self._broken: list[BrokenPlugin] = []
        self._conflicts: dict[str, list[TermInfo | TermReference]] = {}
        self._broken_terms: dict[str, BrokenPlugin] = {}  # references whose class failed to load or check
        self._loading = threading.RLock()
        self._available: dict[str, tuple[str, str]] = {}  # normalised dist / entry-point name -> (dist, version)
        self._left_out: set[str] = set()  # normalised distributions DISTILL_PLUGINS left out
        self._notes: list[str] = []
        self.strict = _flag(STRICT_ENV)

    # --- registration -----------------------------------------------------------------------------
    def register_plugin(
        self, plugin: ModuleType | object, name: str | None = None, provenance: Provenance | None = None
    ) -> list[str]:
        """Register a module or object with ``@hookimpl`` functions; return the term names it added.

        Failures raise PluginError (callers that discover entry points isolate them); a plugin that adds
        no term raises NoTermsError saying which of the usual causes applies.
        """
        provenance = provenance or Provenance(entry_point=str(name or getattr(plugin, "__name__", "")))
        label = name or getattr(plugin, "__name__", None) or repr(plugin)
        try:
            self.pm.register(plugin, name=label)
        except pluggy.PluginValidationError as exc:
            raise PluginError(_hook_mismatch(self.pm, plugin, label, exc)) from exc
        try:
            try:
                self.pm.check_pending()  # a misspelt hook name is an error, not a silent no-op
            except pluggy.PluginValidationError as exc:
                raise PluginError(_hook_mismatch(self.pm, plugin, label, exc)) from exc
            collected: list[TermInfo | TermReference] = []

            def register(term: Any, target: Any = None) -> None:
                """``register(TermClass)``, or ``register("name", "package.module:Class")`` to import on first use."""
                if target is None and not isinstance(term, str):
                    validate_term_class(term)
                    collected.append(TermInfo(term.name, term, provenance))
                else:
                    collected.append(reference(term, target, provenance))

            impls = [i for i in self.pm.hook.distill_loss_terms.get_hookimpls() if i.plugin is plugin]
            for impl in impls:  # pass only the arguments the impl declares, as pluggy would
                impl.function(*[{"register": register}[a] for a in impl.argnames])
            if not collected and not _implements_another_hook(self.pm, plugin):
                raise NoTermsError(f"registered no terms: {_no_terms_hint(plugin, impls)}")
        except BaseException:
            self.pm.unregister(plugin)
            raise
        for entry in collected:
            self._add(entry)
        return [entry.name for entry in collected]

    def register_term(self, cls: type[LossTerm], provenance: Provenance | None = None) -> None:
        """Register one term class directly (notebooks and tests)."""
        validate_term_class(cls)
        self._add(TermInfo(cls.name, cls, provenance or Provenance()))

    def _add(self, info: TermInfo | TermReference) -> None:
        if info.name in self._conflicts:
            self._conflicts[info.name].append(info)
            return
        existing = self._terms.get(info.name)
        if existing is not None and _identity(existing) != _identity(info):
            del self._terms[info.name]
            self._conflicts[info.name] = [existing, info]
            if self.strict:
                raise PluginError(self._conflict_message(info.name))
            return
        self._terms[info.name] = info

    def _conflict_message(self, name: str) -> str:
        infos = _by_provenance(self._conflicts[name])
        who = " and ".join(f"{i.provenance} ({_identity(i).replace(':', '.')})" for i in infos)
        dists = [i.provenance.distribution for i in infos]
        others = sorted({d for d, _ in self._available.values()} - set(dists[1:]))
        allow = f"{ALLOW_ENV}={','.join(others)}" if dists[0] in others else f"{ALLOW_ENV}=<the distributions to load>"
        return (
            f"term name {name!r} is registered by more than one plugin: {who}; either uninstall one "
            f"(pip uninstall {' or '.join(dists[1:])}), or load every plugin but it: {allow}"
        )

    # --- entry points ------------------------------------------------------------------------------
    def load_entrypoints(self, group: str = hookspecs.PROJECT) -> None:
        """Load every entry point of ``group`` that the environment switches allow, isolating failures."""
        if _flag(NO_AUTOLOAD_ENV):
            return
        wanted = [n.strip() for n in os.environ.get(ALLOW_ENV, "").split(",") if n.strip()]
        allow = {normalise(n) for n in wanted}
        seen: set[tuple[str, str]] = set()
        for ep, dist_name, version in declared_entry_points(group):
            if (dist_name, ep.name) in seen:  # one name declared twice by one distribution
                continue
            seen.add((dist_name, ep.name))
            self._available[normalise(ep.name)] = self._available[normalise(dist_name)] = (dist_name, version)
            if allow and normalise(ep.name) not in allow and normalise(dist_name) not in allow:
                self._left_out.add(normalise(dist_name))
                continue
            provenance = Provenance(dist_name, version, f"{ep.name} = {ep.value}")
            try:
                self.register_plugin(ep.load(), name=f"{dist_name}:{ep.name}", provenance=provenance)
            except Exception as exc:  # isolate: one broken plugin never stops the others
                error = str(exc) if isinstance(exc, NoTermsError) else f"{type(exc).__name__}: {exc}"
                broken = BrokenPlugin(ep.name, provenance, error)
                self._broken.append(broken)
                if self.strict:
                    raise PluginError(f"plugin {broken}") from exc
        self._check_allowlist(wanted)

    def _check_allowlist(self, wanted: list[str]) -> None:
        """Warn (fail, in strict mode) for each name in DISTILL_PLUGINS that no installed plugin answers to."""
        names = sorted({n for n, _ in self._available.values()})
        for name in wanted:
            if normalise(name) in self._available:
                continue
            note = (
                f"{ALLOW_ENV}={os.environ.get(ALLOW_ENV, '')!r} names {name!r}, which matches no installed "
                f"plugin (by distribution or entry-point name); installed plugins: {', '.join(names) or 'none'}"
                f"{did_you_mean(name, names)}"
            )
            self._notes.append(note)
            if self.strict:
                raise PluginError(note)
            warnings.warn(note, RuntimeWarning, stacklevel=3)

    # --- lookup -------------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        """Whether a term ``name`` is registered (without loading a term registered by reference)."""
        return name in self._terms

    @property
    def terms(self) -> dict[str, TermInfo]:
        """Usable terms by name (conflicting names excluded): loads and checks every term registered by
        reference; those that fail join ``broken``."""
        self._load_all()
        return {name: info for name, info in self._terms.items() if isinstance(info, TermInfo)}

    @property
    def broken(self) -> list[BrokenPlugin]:
        """Plugins that failed to load or register, and terms registered by reference whose class did not."""
        self._load_all()  # a reference's failure shows only once it is loaded
        return list(self._broken)

    def _load_all(self) -> None:
        for name in list(self._terms):
            self._loaded(name)

    def _loaded(self, name: str) -> TermInfo | None:
        """The term ``name`` with its class: a reference is imported and checked once, here; a failure is
        recorded in ``broken`` (raised in strict mode). None when ``name`` is not usable."""
        entry = self._terms.get(name)
        if not isinstance(entry, TermReference):
            return entry
        with self._loading, paused_gc():
            entry = self._terms.get(name)
            if not isinstance(entry, TermReference):  # another thread loaded it
                return entry
            try:
                cls = entry.load()
                validate_term_class(cls)
                if cls.name != name:
                    raise PluginError(f"{entry.target} is registered as {name!r}, but its name is {cls.name!r}")
            except Exception as exc:  # isolate: a broken term never stops the others
                error = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
                broken = BrokenPlugin(name, entry.provenance, f"term {name!r} ({entry.target}): {error}")
                del self._terms[name]
                self._broken.append(broken)
                self._broken_terms[name] = broken
                if self.strict:
                    raise PluginError(f"plugin {broken}") from exc
                return None
            info = self._terms[name] = TermInfo(name, cls, entry.provenance)
            return info

    @property
    def notes(self) -> list[str]:
        """Discovery warnings that are no broken plugin (a DISTILL_PLUGINS name matching nothing)."""
        return list(self._notes)

    @property
    def conflicts(self) -> dict[str, list[TermInfo | TermReference]]:
        """Names two plugins claim, with each claim (a class, or a reference not loaded)."""
        return {k: _by_provenance(v) for k, v in self._conflicts.items()}

    def get(self, name: str) -> TermInfo:
        """The term registered as ``name``, or an error that says why it is not usable."""
        info = self._loaded(name) if name in self._terms else None
        if info is not None:
            return info
        if name in self._broken_terms:
            raise UnknownTermError(f"term {name!r} comes from a plugin that failed to load: {self._broken_terms[name]}")
        if name in self._conflicts:
            raise UnknownTermError(self._conflict_message(name))
        expected = provider(name)
        candidates = term_candidates(name) | ({normalise(expected)} if expected else set())
        for broken in self._broken:
            if {normalise(broken.name), normalise(broken.provenance.distribution)} & candidates:
                raise UnknownTermError(f"term {name!r} comes from a plugin that failed to load: {broken}")
        origin = last_origin(name)
        if origin is not None:
            raise UnknownTermError(self._origin_message(name, origin))
        installed = ", ".join(sorted(self._terms)) or "none"
        hint = f"; it is provided by the distribution {expected!r} (pip install {expected})" if expected else ""
        hint += lookalike_group_hint(name)
        raise UnknownTermError(
            f"unknown term {name!r}{did_you_mean(name, self._terms)}{hint}; installed terms: {installed}"
        )

    def _origin_message(self, name: str, origin: TermOrigin) -> str:
        """Why a term the lock or the pins remember is missing now, and the command that brings it back."""
        found = self._available.get(normalise(origin.distribution))
        if found is not None and normalise(found[0]) in self._left_out:
            return (
                f"term {name!r} is not loaded: it came from {origin} ({origin.source}), and "
                f"{found[0]} {found[1]} is installed but {ALLOW_ENV}={os.environ.get(ALLOW_ENV, '')!r} "
                f"leaves it out; add {found[0]} to {ALLOW_ENV}"
            )
        if found is not None:
            return (
                f"term {name!r} is not registered: it came from {origin} ({origin.source}), but the "
                f"installed {found[0]} {found[1]} does not register it; pip install {origin.requirement()}"
            )
        return (
            f"term {name!r} is not installed; it came from {origin} ({origin.source}): "
            f"pip install {origin.requirement()}"
        )


def lookalike_group_hint(name: str) -> str:
    """'' or a note that an installed distribution declares ``name`` in an entry-point group named like ours
    (``distill.terms``, ``distill_loss``): discovery reads only the group ``distill``."""
    for found in metadata.distributions():
        for ep in found.entry_points:
            if ep.name != name or ep.group == hookspecs.PROJECT or ep.group.endswith(".recipes"):  # ours
                continue
            if not normalise(ep.group).startswith(normalise(hookspecs.PROJECT)):
                continue
            dist = found.metadata["Name"]
            return (
                f"; the installed distribution {dist} declares {name!r} in the entry-point group "
                f"{ep.group!r}, named like ours: terms are found only in the group {hookspecs.PROJECT!r} "
                f"([project.entry-points.{hookspecs.PROJECT}] in its pyproject.toml)"
            )
    return ""


# --- diagnoses for plugins that register nothing or do not match the hookspec ------------------------------


def _plugin_label(plugin: Any) -> str:
    return str(getattr(plugin, "__name__", None) or type(plugin).__name__)


def _implements_another_hook(pm: pluggy.PluginManager, plugin: Any) -> bool:
    """A plugin with no terms that implements another of our hooks (modules terms build) is not broken."""
    return any(
        impl.plugin is plugin
        for name in hookspecs.names()
        if name != hookspecs.HOOK
        for impl in getattr(pm.hook, name).get_hookimpls()
    )


def _no_terms_hint(plugin: Any, impls: list[Any]) -> str:
    """Which of the usual causes applies, and what to check."""
    hook, where = hookspecs.HOOK, _plugin_label(plugin)
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


def _hook_mismatch(pm: pluggy.PluginManager, plugin: Any, label: str, exc: pluggy.PluginValidationError) -> str:
    """pluggy's validation error, said with the hook a plugin should have written."""
    expected = hookspecs.signature()
    specs = hookspecs.names()
    for attr in dir(plugin):
        if pm.parse_hookimpl_opts(plugin, attr) is not None:
            function = getattr(plugin, attr)
            if attr not in specs:
                return (
                    f"plugin {label!r} defines unknown hook {attr!r}{did_you_mean(attr, specs)} "
                    f"(the hook is {expected})"
                )
            params = list(inspect.signature(function).parameters)
            extra = [p for p in params if p not in hookspecs.argnames(attr)]
            if extra:
                return (
                    f"plugin {label!r}: hook {attr}({', '.join(params)}) takes "
                    f"{', '.join(map(repr, extra))}, which the hook does not pass; expected {expected}"
                )
    return f"plugin {label!r}: {' '.join(str(exc).split())}; expected {expected}"


def _by_provenance(infos: list[TermInfo | TermReference]) -> list[TermInfo | TermReference]:
    """A stable order for messages and listings, whatever the order of sys.path."""
    return sorted(infos, key=lambda i: str(i.provenance))


_default: Registry | None = None
_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry: entry points are scanned on first use, once, then cached."""
    global _default
    if _default is None:
        with _lock, paused_gc():
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
        forget()  # the next discovery reads the installed distributions afresh
    return old


def register(plugin: ModuleType | object | type, name: str | None = None) -> list[str]:
    """Register a plugin module/object, or a LossTerm class, in the process-wide registry."""
    registry = get_registry()
    if isinstance(plugin, type) and issubclass(plugin, LossTerm):
        registry.register_term(plugin)
        return [plugin.name]
    return registry.register_plugin(plugin, name=name)
