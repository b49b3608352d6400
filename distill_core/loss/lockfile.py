"""A built loss's lock: each term's distribution==version and config, written beside a run, and drift checks.

Reading a lock is ``provenance.read_lock``'s (re-exported here with LockError).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distill_core.config.converter import converter
from distill_core.files.atomic import atomic_write_text
from distill_core.loss.combined import CombinedLoss
from distill_core.registry.discovery import UnknownTermError, get_registry
from distill_core.registry.provenance import LockError, read_lock

__all__ = ["LockError", "make_lock", "lock_differences", "write_lock", "read_lock", "check_lock"]


def make_lock(loss: CombinedLoss) -> dict[str, dict[str, Any]]:
    """``{name: {term, inputs, distribution, version, entry_point, config}}`` for every term of a built loss,
    read from its plan (``term`` is the registered class a named instance uses, ``inputs`` its logical input ->
    batch key map as written)."""
    return {
        name: {
            "term": t.term,
            "inputs": t.inputs,
            "distribution": t.provenance.distribution,
            "version": t.provenance.version,
            "entry_point": t.provenance.entry_point,
            "config": converter.unstructure(loss.plan.config.terms[name]),
        }
        for name, t in loss.plan.terms.items()
    }


def lock_differences(lock: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What differs between a saved lock and the plugins installed now, one sentence each."""
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
    """Write ``make_lock(loss)`` as JSON, atomically."""
    return atomic_write_text(path, json.dumps(make_lock(loss), indent=2) + "\n")


def check_lock(path: str | os.PathLike) -> list[str]:
    """Read a run's lock.json and warn (once, listing all) where the installed plugins differ."""
    lock = read_lock(path)
    diffs = lock_differences(lock)
    if diffs:
        warnings.warn(f"{path}: installed plugins differ from the run's lock: " + "; ".join(diffs), stacklevel=2)
    return diffs
