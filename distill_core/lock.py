"""The provenance lock of a run: each term's distribution==version and config, and drift checks."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

from .atomic import atomic_write_text
from .combined import CombinedLoss
from .config import _describe, converter, join


def make_lock(loss: CombinedLoss) -> dict[str, dict[str, Any]]:
    """``{name: {term, distribution, version, entry_point, config}}`` for every term of a built loss (``term`` is
    the registered class a named instance uses)."""
    return {name: {"term": loss.config.term_of(name), "distribution": p.distribution, "version": p.version,
                   "entry_point": p.entry_point, "config": converter.unstructure(loss.config.terms[name])}
            for name, p in loss.provenance.items()}


def lock_differences(lock: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What differs between a saved lock and the plugins installed now, one sentence each."""
    from .plugins import UnknownTermError, get_registry

    registry = get_registry()
    out = []
    for name, entry in lock.items():
        saved = f"{entry.get('distribution')}=={entry.get('version')}"
        try:
            now = registry.get(entry.get("term", name)).provenance
        except UnknownTermError:
            out.append(f"term {name!r}: saved with {saved}, not installed now")
            continue
        if (now.distribution, now.version) != (entry.get("distribution"), entry.get("version")):
            out.append(f"term {name!r}: saved with {saved}, installed now {now}")
    return out


def write_lock(path: str | os.PathLike, loss: CombinedLoss) -> Path:
    return atomic_write_text(path, json.dumps(make_lock(loss), indent=2) + "\n")


class LockError(ValueError):
    """A lock.json that cannot be read: the message names the file and where it breaks."""


def read_lock(path: str | os.PathLike) -> dict[str, Any]:
    """A run's lock.json as ``{term: {distribution, version, ...}}``; LockError names the file otherwise."""
    p = Path(path)
    try:
        lock = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LockError(f"{p}: no such lock file") from None
    except UnicodeDecodeError as exc:
        raise LockError(f"{p}: not UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise LockError(f"{p}: truncated or corrupt JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(lock, dict) or not all(isinstance(v, dict) for v in lock.values()):
        raise LockError(f"{p}: expected a JSON object of {{term: {{distribution, version, ...}}}}")
    return lock


def check_lock(path: str | os.PathLike) -> list[str]:
    """Read a run's lock.json and warn (once, listing all) where the installed plugins differ."""
    lock = read_lock(path)
    diffs = lock_differences(lock)
    if diffs:
        warnings.warn(f"{path}: installed plugins differ from the run's lock: " + "; ".join(diffs), stacklevel=2)
    return diffs


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _diff(saved: Any, now: Any, path: str, out: list[str]) -> None:
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        for key in list(saved) + [k for k in now if k not in saved]:
            where = join(path, str(key))
            if key not in now:
                out.append(f"{where}: removed (was {_describe(saved[key])})")
            elif key not in saved:
                out.append(f"{where}: added ({_describe(now[key])})")
            else:
                _diff(saved[key], now[key], where, out)
    else:
        numbers = isinstance(saved, (int, float)) and isinstance(now, (int, float))  # 1 and 1.0 are one weight
        if saved != now or (type(saved) is not type(now) and not numbers):
            out.append(f"{path or 'loss'}: {_describe(saved)} -> {_describe(now)}")


def _with_defaults(saved_config: Any) -> Any:
    """A saved config as this version reads it: keys added since (with their defaults) are no change."""
    from .config import ConfigError
    from .loss_config import load_config

    if not isinstance(saved_config, Mapping):
        return saved_config
    try:
        return converter.unstructure(load_config(saved_config))
    except (ConfigError, LookupError, TypeError, ValueError):  # not readable now: compare it as written
        return saved_config


def loss_changes(saved_config: Any, saved_lock: Any, loss: CombinedLoss | None) -> list[str]:
    """Path-level differences between a checkpoint's loss (config and plugin lock) and ``loss``.

    Each line reads ``terms.kl.free_bits: 0.1 -> 0.2``; plugin versions as ``plugin for 'stft': ...``.
    """
    out: list[str] = []
    now_config = converter.unstructure(loss.config) if loss is not None else None
    if (saved_config is None) != (now_config is None):
        describe = {True: "the legacy vae_loss", False: "a CombinedLoss"}
        return [f"loss: {describe[saved_config is None]} -> {describe[now_config is None]}"]
    _diff(_plain(_with_defaults(saved_config)), _plain(now_config), "", out)
    saved_lock = saved_lock if isinstance(saved_lock, Mapping) else {}
    now_lock = make_lock(loss) if loss is not None else {}
    for term in [t for t in now_lock if t in saved_lock]:
        was, now = saved_lock[term], now_lock[term]
        was = f"{was.get('distribution')}=={was.get('version')}" if isinstance(was, Mapping) else _describe(was)
        now = f"{now['distribution']}=={now['version']}"
        if was != now:
            out.append(f"plugin for {term!r}: {was} -> {now}")
    return out
