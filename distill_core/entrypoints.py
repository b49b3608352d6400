"""The entry points of one group, from the installed distributions that declare it: discovery's and the recipes'.

``importlib.metadata.entry_points(group=...)`` parses every installed distribution's entry_points.txt, and each
name or version lookup parses a METADATA file again. Here one pass reads the entry_points.txt files, parses
only those that mention the group, and each declaring distribution's METADATA once.
"""

from __future__ import annotations

import re
from importlib import metadata

__all__ = ["declared_entry_points", "normalise"]


def normalise(name: str) -> str:
    """A distribution or entry-point name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_entry_points(group: str) -> list[tuple[metadata.EntryPoint, str, str]]:
    """The entry points of ``group``, each with its distribution's name and version, in sys.path order.

    As in importlib.metadata, a distribution found twice on sys.path counts once, the first.
    """
    found: list[tuple[metadata.EntryPoint, str, str]] = []
    seen: set[str] = set()
    for dist in metadata.distributions():
        text = dist.read_text("entry_points.txt")
        if not text or group not in text:
            continue
        declared = dist.entry_points.select(group=group)
        if not declared:
            continue
        about = dist.metadata
        name, version = about["Name"], about["Version"]
        if name is None or normalise(name) in seen:  # no Name: not an installed distribution
            continue
        seen.add(normalise(name))
        found += [(ep, name, version or "") for ep in declared]
    return found
