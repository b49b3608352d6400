"""Discovery: entry points in group ``distill``, allow/deny switches, failure isolation.

The registry owns every term name. Plugins hand it classes through ``register``, or a term's name and where
its class lives (``register("name", "package.module:Class")``), imported when the term is first used;
collisions, broken plugins and the distribution behind each term are recorded here and nowhere else. What a
run remembers about its terms (locks, pins) is ``provenance``'s.

Hooks are called the way pluggy means them to be: every plugin is registered with the plugin manager first,
then ``pm.hook.distill_loss_terms(register=...)`` runs once, so hook wrappers, tracing and pluggy's argument
checks apply. Each ``register`` call is credited to the hook implementation it came from, and through it to
that plugin's distribution.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pluggy

from distill_core.config.converter import did_you_mean
from distill_core.registry import hookspecs
from distill_core.registry.catalogue import ALLOW_ENV, TermCatalogue
from distill_core.registry.diagnoses import (
    hook_mismatch,
    implements_another_hook,
    no_terms_hint,
)
from distill_core.registry.entries import (
    BrokenPlugin,
    NoTermsError,
    PluginError,
    Provenance,
    TermInfo,
    TermReference,
    UnknownTermError,
    reference,
    validate_term_class,
)
from distill_core.registry.entrypoints import declared_entry_points, forget
from distill_core.registry.hookcalls import calling_plugin, failing_plugin, implementations, only_wraps, term_impls
from distill_core.registry.provenance import (
    normalise,
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


def _flag(env: str) -> bool:
    return os.environ.get(env, "").strip().lower() not in ("", "0", "false", "no")


class Registry(TermCatalogue):
    """The term catalogue filled by plugins: the pluggy manager behind them, and discovery of entry points."""

    def __init__(self) -> None:
        super().__init__(strict=_flag(STRICT_ENV))
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        # a plugin that declares hooks of its own adds them as it is registered (a historic call)
        self.pm.hook.distill_add_hookspecs.call_historic(kwargs={"pluginmanager": self.pm})
        self._provenance: dict[str, Provenance] = {}  # plugin name in the manager -> where it came from

    # --- registration -----------------------------------------------------------------------------
    def register_plugin(
        self, plugin: ModuleType | object, name: str | None = None, provenance: Provenance | None = None
    ) -> list[str]:
        """Register a module or object with ``@hookimpl`` functions; return the term names it added.

        Failures raise PluginError (callers that discover entry points isolate them); a plugin that adds
        no term raises NoTermsError saying which of the usual causes applies.
        """
        label = self._attach(plugin, name, provenance)
        try:
            self._check_pending({label})
            collected = self._call_term_hooks({label})
            added = self._accept(label, collected[label])
        except BaseException:
            self._detach(label)
            raise
        return added

    def _attach(self, plugin: ModuleType | object, name: str | None, provenance: Provenance | None) -> str:
        """Register ``plugin`` with the plugin manager (pluggy validates its hooks); return its name there."""
        label = name or getattr(plugin, "__name__", None) or repr(plugin)
        self._provenance[label] = provenance or Provenance(entry_point=str(name or getattr(plugin, "__name__", "")))
        try:
            self.pm.register(plugin, name=label)
        except pluggy.PluginValidationError as exc:
            del self._provenance[label]
            raise PluginError(hook_mismatch(self.pm, plugin, label, exc)) from exc
        return label

    def _detach(self, label: str) -> None:
        if self.pm.get_plugin(label) is not None:
            self.pm.unregister(name=label)
        self._provenance.pop(label, None)

    def _check_pending(self, labels: set[str]) -> set[str]:
        """Every implementation of these plugins matches a declared hook (a misspelt hook name is an error, not a
        silent no-op). Raises for the first mismatch when one plugin is checked; with several, each mismatching
        plugin is left out and recorded as broken, and the rest are returned."""
        ok = set(labels)
        while True:
            try:
                self.pm.check_pending()
                return ok
            except pluggy.PluginValidationError as exc:
                label = self.pm.get_name(exc.plugin) or ""
                error = PluginError(hook_mismatch(self.pm, exc.plugin, label, exc))
                provenance = self._provenance.get(label, Provenance())
                self._detach(label)
                if len(labels) == 1 or label not in ok:
                    raise error from exc
                ok.discard(label)
                self._broke(label.partition(":")[2] or label, provenance, error)

    def call_register_hook(self, hook: str, receive: Callable[[str, Any, Any], None]) -> None:
        """Call ``pm.hook.<hook>(register=...)`` once, through pluggy's own hook caller (wrappers and tracing
        included). Each ``register(obj, target=None)`` call reaches ``receive(plugin, obj, target)``, where
        ``plugin`` names the plugin whose implementation made it (``provenance_of`` says where it came from)."""
        self._call_hook(hook, receive, None)

    def provenance_of(self, plugin: str) -> Provenance:
        """Where a plugin registered under this name came from (its distribution, version and entry point)."""
        return self._provenance[plugin]

    def _call_hook(self, hook: str, receive: Callable[[str, Any, Any], None], labels: set[str] | None) -> None:
        others = [p for n, p in self.pm.list_name_plugin() if labels is not None and n not in labels]
        caller = self.pm.subset_hook_caller(hook, others) if others else getattr(self.pm.hook, hook)
        impl_of = implementations(caller.get_hookimpls())

        def register(obj: Any, target: Any = None) -> None:
            label = calling_plugin(sys._getframe(1), impl_of)
            if label is None or label not in self._provenance:
                raise PluginError(f"register({obj!r}) was called outside a {hook}(register) hook; call it there")
            receive(label, obj, target)

        caller(register=register)

    def _call_term_hooks(self, labels: set[str]) -> dict[str, list[TermInfo | TermReference]]:
        """Run the term hook once over the plugins ``labels`` name; what each one's implementations registered."""
        collected: dict[str, list[TermInfo | TermReference]] = {label: [] for label in labels}

        def receive(label: str, term: Any, target: Any) -> None:
            """``register(TermClass)``, or ``register("name", "package.module:Class")`` to import on first use."""
            provenance = self._provenance[label]
            if target is None and not isinstance(term, str):
                validate_term_class(term)
                collected[label].append(TermInfo(term.name, term, provenance))
            else:
                collected[label].append(reference(term, target, provenance))

        self._call_hook(hookspecs.HOOK, receive, labels)
        return collected

    def _accept(self, label: str, entries: list[TermInfo | TermReference]) -> list[str]:
        """Add what one plugin registered, or say why a plugin that registered nothing is broken."""
        plugin = self.pm.get_plugin(label)
        if not entries and not implements_another_hook(self.pm, plugin) and not only_wraps(self.pm, plugin):
            raise NoTermsError(f"registered no terms: {no_terms_hint(plugin, term_impls(self.pm, plugin))}")
        for entry in entries:
            self._add(entry)
        return [entry.name for entry in entries]

    # --- entry points ------------------------------------------------------------------------------
    def load_entrypoints(self, group: str = hookspecs.PROJECT) -> None:
        """Load every entry point of ``group`` that the environment switches allow, isolating failures."""
        if _flag(NO_AUTOLOAD_ENV):
            return
        wanted = [n.strip() for n in os.environ.get(ALLOW_ENV, "").split(",") if n.strip()]
        allow = {normalise(n) for n in wanted}
        seen: set[tuple[str, str]] = set()
        attached: dict[str, str] = {}  # plugin name in the manager -> entry-point name, in entry-point order
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
                label = self._attach(ep.load(), f"{dist_name}:{ep.name}", provenance)
            except Exception as exc:  # isolate: one broken plugin never stops the others
                self._broke(ep.name, provenance, exc)
                continue
            attached[label] = ep.name
        kept = self._check_pending(set(attached)) if attached else set()
        attached = {label: name for label, name in attached.items() if label in kept}
        collected = self._call_isolated(attached)
        for label, ep_name in attached.items():
            if label not in collected:
                continue
            try:
                self._accept(label, collected[label])
            except PluginError as exc:
                provenance = self._provenance[label]
                self._detach(label)
                self._broke(ep_name, provenance, exc)
        self._check_allowlist(wanted)

    def _call_isolated(self, attached: dict[str, str]) -> dict[str, list[TermInfo | TermReference]]:
        """One hook call over every attached plugin. A plugin whose hook raises is marked broken and left out,
        and the call runs again over the others (what they registered in the failed call is discarded)."""
        pending = set(attached)
        while pending:
            impl_of = implementations(getattr(self.pm.hook, hookspecs.HOOK).get_hookimpls())
            try:
                return self._call_term_hooks(pending)
            except Exception as exc:
                label = failing_plugin(exc.__traceback__, impl_of)
                if label is None or label not in pending:
                    raise
                provenance = self._provenance[label]
                self._detach(label)
                pending.discard(label)
                self._broke(attached[label], provenance, exc)
        return {}

    def _broke(self, name: str, provenance: Provenance, exc: Exception) -> None:
        """Record a plugin that failed to load or register (raise in strict mode)."""
        error = str(exc) if isinstance(exc, NoTermsError) else f"{type(exc).__name__}: {exc}"
        broken = BrokenPlugin(name, provenance, error)
        self._broken.append(broken)
        if self.strict:
            raise PluginError(f"plugin {broken}") from exc

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
