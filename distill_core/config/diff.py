"""What changed between two nested values (a loss config, a discriminator's options, a run's options): one
``path: old -> new`` line per changed leaf, and a bounded summary of them for a one-line message.

Torch-free. Mappings (and attrs instances) are walked key by key, lists of tables index by index; a list of
plain values (``periods = [2, 3]``) is one leaf. Values are shown by a bounded repr, so a huge value never
makes a huge message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from distill_core.config.errors import _describe, join

__all__ = ["MISSING", "Change", "changes", "diff_lines", "summarize"]

SHOWN = 4  # changes a one-line summary lists before "and N more"


class _Missing:
    """The side of a change where a key or an entry does not exist."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@attrs.frozen
class Change:
    """One changed leaf: where (a dotted, indexed path: ``a.b[0].c``), what it was, what it is (MISSING: absent)."""

    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        if self.old is MISSING:
            return f"{self.path}: added ({_describe(self.new)})"
        if self.new is MISSING:
            return f"{self.path}: removed (was {_describe(self.old)})"
        return f"{self.path}: {_describe(self.old)} -> {_describe(self.new)}"


def _table(value: Any) -> Mapping[str, Any] | None:
    """A value walked key by key: a mapping, or an attrs instance as its fields; None for anything else."""
    if isinstance(value, Mapping):
        return value
    if attrs.has(type(value)):
        return {a.name: getattr(value, a.name) for a in attrs.fields(type(value))}
    return None


def _entries(value: Any) -> Sequence[Any] | None:
    """A list or tuple (never a string or bytes), else None."""
    return value if isinstance(value, (list, tuple)) else None


def _nested(items: Sequence[Any]) -> bool:
    return any(_table(v) is not None or _entries(v) is not None for v in items)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(old: Any, new: Any) -> bool:
    """Equal as config values: 1 and 1.0 are one number, NaN is NaN, True is not 1, (2, 3) is [2, 3]."""
    if _number(old) and _number(new):
        return old == new or (isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new))
    old_list, new_list = _entries(old), _entries(new)
    if old_list is not None and new_list is not None:
        return len(old_list) == len(new_list) and all(_same(a, b) for a, b in zip(old_list, new_list))
    if type(old) is not type(new) and not (isinstance(old, str) and isinstance(new, str)):
        return False
    try:
        return bool(old == new)
    except Exception:  # a value whose comparison raises (an array): unequal unless it is the same object
        return old is new


def _walk(old: Any, new: Any, path: str, root: str, out: list[Change]) -> None:
    old_table, new_table = _table(old), _table(new)
    if old_table is not None and new_table is not None:
        for key in [*old_table, *(k for k in new_table if k not in old_table)]:
            where = join(path, str(key))
            if key not in new_table:
                out.append(Change(where, old_table[key], MISSING))
            elif key not in old_table:
                out.append(Change(where, MISSING, new_table[key]))
            else:
                _walk(old_table[key], new_table[key], where, root, out)
        return
    old_list, new_list = _entries(old), _entries(new)
    if old_list is not None and new_list is not None and (_nested(old_list) or _nested(new_list)):
        for i in range(max(len(old_list), len(new_list))):
            where = f"{path or root}[{i}]"
            if i >= len(new_list):
                out.append(Change(where, old_list[i], MISSING))
            elif i >= len(old_list):
                out.append(Change(where, MISSING, new_list[i]))
            else:
                _walk(old_list[i], new_list[i], where, root, out)
        return
    if not _same(old, new):
        out.append(Change(path or root, old, new))


def changes(old: Any, new: Any, *, path: str = "", root: str = "value") -> list[Change]:
    """Every changed leaf between ``old`` and ``new``, in ``old``'s key order (then keys only ``new`` has).

    ``path`` prefixes every path (``terms.<name>``); ``root`` names the whole value where it is itself
    the leaf that changed.
    """
    out: list[Change] = []
    _walk(old, new, path, root, out)
    return out


def diff_lines(old: Any, new: Any, *, path: str = "", root: str = "value") -> list[str]:
    """``changes`` as lines: ``path: old -> new``, ``path: added (new)``, ``path: removed (was old)``."""
    return [str(c) for c in changes(old, new, path=path, root=root)]


def summarize(lines: Sequence[str], shown: int = SHOWN, sep: str = "; ") -> str:
    """The first ``shown`` lines joined by ``sep``, then ``and N more`` for the rest."""
    head = list(lines[:shown])
    if len(lines) > shown:
        head.append(f"and {len(lines) - shown} more")
    return sep.join(head)
