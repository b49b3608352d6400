"""Where terms come from: a run's lock (``lock.json``, or a checkpoint's), a config's pins
(``required_plugins``, read through ``packaging``), and what a missing term's error should name.

One reader each: ``read_lock`` for locks, ``requirement`` for pins.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import types
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

from distill_core.config.converter import Problem
from distill_core.files.checkpoint import CheckpointError, load_checkpoint
from distill_core.registry.entrypoints import normalise

IN_PROCESS = "<in-process>"


def term_candidates(name: str) -> set[str]:
    """The normalised distribution names that may provide a term called ``name`` (its own, distill-<name>)."""
    return {normalise(name), normalise(f"distill-{name}")}


# --- locks ---------------------------------------------------------------------------------------------


class LockError(ValueError):
    """A lock that cannot be read: the message names the file and where it breaks."""


def read_lock(path: str | os.PathLike) -> dict[str, Any]:
    """Term provenance saved by a run, ``{term: {distribution, version, ...}}``: a ``lock.json``, a run folder
    holding one, or a checkpoint's ``provenance``; LockError names the file otherwise."""
    p = Path(path)
    if p.is_dir():
        p = p / "lock.json"
    if p.suffix.lower() != ".json":
        try:
            lock: Any = load_checkpoint(p).get("provenance", {})
        except CheckpointError as exc:
            raise LockError(str(exc)) from None
    else:
        try:
            lock = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LockError(f"{p}: no such lock file") from None
        except UnicodeDecodeError as exc:
            raise LockError(f"{p}: not UTF-8 at byte {exc.start}") from None
        except json.JSONDecodeError as exc:
            raise LockError(
                f"{p}: truncated or corrupt JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
    if not isinstance(lock, dict) or not all(isinstance(v, dict) for v in lock.values()):
        raise LockError(f"{p}: expected a JSON object of {{term: {{distribution, version, ...}}}}")
    return lock


# --- pins ----------------------------------------------------------------------------------------------


def requirement(pin: str) -> Any:
    """A pin as a ``packaging`` Requirement; InvalidRequirement says what is wrong with its syntax."""
    from packaging.requirements import Requirement  # 17 ms to import: only where pins are used

    return Requirement(pin)


def parse_pins(pins: Iterable[str]) -> list[Problem]:
    """Problems with the pins' syntax (checked at load)."""
    problems: list[Problem] = []
    for i, pin in enumerate(pins):
        from packaging.requirements import InvalidRequirement  # with requirement(): only where pins are used

        try:
            requirement(pin)
        except InvalidRequirement as exc:
            problems.append((f"required_plugins[{i}]", f"not a requirement like 'distill-sisdr>=0.1': {exc}"))
    return problems


def unmet_pins(pins: Iterable[str]) -> list[Problem]:
    """Problems with what is installed against the pins (checked when a loss is built)."""
    problems: list[Problem] = []
    for i, pin in enumerate(pins):
        req = requirement(pin)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append((f"required_plugins[{i}]", f"{pin!r} is required but {req.name} is not installed"))
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append((f"required_plugins[{i}]", f"{pin!r} is required but {req.name}=={version} is installed"))
    return problems


# --- what a missing term's error names ---------------------------------------------------------------------


@attrs.frozen
class TermOrigin:
    """The distribution a term came from last, as a lock or a ``required_plugins`` pin records it."""

    distribution: str
    version: str = ""  # exact version (a lock), or ""
    specifier: str = ""  # a pin's version specifier, e.g. ">=0.1", or ""
    source: str = ""  # where this was read: a lock file, a checkpoint, "required_plugins"

    def __str__(self) -> str:
        return " ".join(p for p in (self.distribution, self.version or self.specifier) if p)

    def requirement(self) -> str:
        """The argument for ``pip install``, quoted when the shell would misread it."""
        if self.version:
            return f"{self.distribution}=={self.version}"
        if self.specifier:
            return f"'{self.distribution}{self.specifier}'"
        return self.distribution


_SOURCES: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar("distill_origins", default=())
_PROVIDERS: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "distill_providers", default=types.MappingProxyType({})
)


@contextlib.contextmanager
def term_origins(
    *,
    lock: str | os.PathLike | Mapping[str, Any] | None = None,
    pins: Iterable[str] = (),
    providers: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """While active, an unknown term's error names the distribution that provided it last.

    ``lock`` is a run's ``lock.json``, a checkpoint with provenance, or a lock mapping; ``pins`` are a
    config's ``required_plugins``; ``providers`` maps a term to the distribution a recipe expects it from.
    Files are read only when a term is missing, never on the happy path.
    """
    sources = tuple(x for x in (lock, tuple(pins) or None) if x is not None)
    token = _SOURCES.set(_SOURCES.get() + sources)
    shown = _PROVIDERS.set({**_PROVIDERS.get(), **(providers or {})})
    try:
        yield
    finally:
        _PROVIDERS.reset(shown)
        _SOURCES.reset(token)


def provider(name: str) -> str | None:
    """The distribution the active recipe expects term ``name`` from, or None."""
    return _PROVIDERS.get().get(name)


def last_origin(name: str) -> TermOrigin | None:
    """The innermost source's record of ``name``, preferring an exact version (a lock) over a pin."""
    found = [o for o in (_origin_from(s, name) for s in reversed(_SOURCES.get())) if o is not None]
    return next((o for o in found if o.version), found[0] if found else None)


def _origin_from(source: Any, name: str) -> TermOrigin | None:
    if isinstance(source, tuple):
        return _origin_from_pins(source, name)
    where = "the lock"
    if isinstance(source, (str, os.PathLike)):
        where = str(source)
        try:
            source = read_lock(source)
        except (OSError, LockError):  # a hint only: an unreadable lock leaves the plain error
            return None
    if not isinstance(source, Mapping):
        return None
    entry = source.get(name)
    if entry is None:  # a named instance's entry records its term class under "term"
        entry = next((e for e in source.values() if isinstance(e, Mapping) and e.get("term") == name), None)
    if (
        not isinstance(entry, Mapping)
        or not isinstance(entry.get("distribution"), str)
        or entry["distribution"] == IN_PROCESS
    ):
        return None
    return TermOrigin(entry["distribution"], str(entry.get("version") or ""), source=where)


def _origin_from_pins(pins: tuple[str, ...], name: str) -> TermOrigin | None:
    from packaging.requirements import InvalidRequirement  # with requirement(): only where pins are used

    candidates = term_candidates(name) | ({normalise(provider(name) or "")} - {""})
    for pin in pins:
        try:
            req = requirement(str(pin))
        except InvalidRequirement:  # reported at load; a hint only here
            continue
        if normalise(req.name) in candidates:
            specs = list(req.specifier)
            exact = len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version
            version = specs[0].version if exact else ""
            return TermOrigin(req.name, version, "" if exact else str(req.specifier), "required_plugins")
    return None
