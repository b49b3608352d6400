"""TermCatalogue: every term name the registry knows, and why a name is not usable.

A term is held as its class, or as a reference (``"package.module:Class"``) imported and checked on first use;
a name two plugins claim is held as a conflict, with both claims; a plugin or reference that failed is kept
with its error. Every "unknown term" message is written here, from what discovery recorded.
"""

from __future__ import annotations

import os
import threading

from distill_core.config.converter import did_you_mean
from distill_core.registry.diagnoses import by_provenance, lookalike_group_hint
from distill_core.registry.entries import (
    BrokenPlugin,
    PluginError,
    Provenance,
    TermInfo,
    TermReference,
    UnknownTermError,
    identity,
    validate_term_class,
)
from distill_core.registry.provenance import TermOrigin, last_origin, normalise, provider, term_candidates
from distill_core.terms.base import LossTerm
from distill_core.util.gcpause import paused_gc

ALLOW_ENV = "DISTILL_PLUGINS"


class TermCatalogue:
    """Terms by name, the names two plugins claim, the plugins that failed, and what is installed."""

    def __init__(self, strict: bool = False) -> None:
        self._terms: dict[str, TermInfo | TermReference] = {}  # a reference until its first use
        self._broken: list[BrokenPlugin] = []
        self._conflicts: dict[str, list[TermInfo | TermReference]] = {}
        self._broken_terms: dict[str, BrokenPlugin] = {}  # references whose class failed to load or check
        self._loading = threading.RLock()
        self._available: dict[str, tuple[str, str]] = {}  # normalised dist / entry-point name -> (dist, version)
        self._left_out: set[str] = set()  # normalised distributions DISTILL_PLUGINS left out
        self._notes: list[str] = []
        self.strict = strict

    def register_term(self, cls: type[LossTerm], provenance: Provenance | None = None) -> None:
        """Register one term class directly (notebooks and tests)."""
        validate_term_class(cls)
        self._add(TermInfo(cls.name, cls, provenance or Provenance()))

    def _add(self, info: TermInfo | TermReference) -> None:
        if info.name in self._conflicts:
            self._conflicts[info.name].append(info)
            return
        existing = self._terms.get(info.name)
        if existing is not None and identity(existing) != identity(info):
            del self._terms[info.name]
            self._conflicts[info.name] = [existing, info]
            if self.strict:
                raise PluginError(self._conflict_message(info.name))
            return
        self._terms[info.name] = info

    def _conflict_message(self, name: str) -> str:
        infos = by_provenance(self._conflicts[name])
        who = " and ".join(f"{i.provenance} ({identity(i).replace(':', '.')})" for i in infos)
        dists = [i.provenance.distribution for i in infos]
        others = sorted({d for d, _ in self._available.values()} - set(dists[1:]))
        allow = f"{ALLOW_ENV}={','.join(others)}" if dists[0] in others else f"{ALLOW_ENV}=<the distributions to load>"
        return (
            f"term name {name!r} is registered by more than one plugin: {who}; either uninstall one "
            f"(pip uninstall {' or '.join(dists[1:])}), or load every plugin but it: {allow}"
        )

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
        return {k: by_provenance(v) for k, v in self._conflicts.items()}

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
