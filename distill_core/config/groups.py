"""Groups: terms summed under one weight, each member with its own weight inside the group, as data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from distill_core.config.converter import Problem, _describe, join
from distill_core.config.schedules import Weight


def _members(value: Mapping[str, float] | Iterable[str]) -> dict[str, float]:
    """A member list (each weighted 1.0) or a table of member weights, as the table."""
    if isinstance(value, Mapping):
        return dict(value)
    return {name: 1.0 for name in value}


@attrs.define
class GroupConfig:
    """``weight * sum(member_weight * term)`` under the output ``key`` (``<group>_loss`` when None).

    ``members`` maps each member term to its weight inside the group; a list of names weights each 1.0.
    """

    weight: Weight = 1.0
    members: dict[str, float] = attrs.field(factory=dict, converter=_members)
    key: str | None = None


KIND = "sum"  # older files name each group's kind; there is one


def group_section(section: Any, path: str, older_kinds: Iterable[str] = ()) -> tuple[Any, list[Problem]]:
    """A group's file section as GroupConfig's fields: ``kind = "sum"`` (older files) dropped, and
    ``members = ["a", "b"]`` written as the table ``{a = 1.0, b = 1.0}``. (None, problems) when unreadable.

    ``older_kinds`` are the kinds older files may name, which the recipes' upgrades read."""
    if not isinstance(section, Mapping):
        return section, []
    kind = section.get("kind", KIND)
    if kind != KIND:
        kinds = ", ".join(map(repr, (KIND, *older_kinds)))
        return None, [
            (
                join(path, "kind"),
                f"expected one of {kinds}, got {_describe(kind)} (or no kind: a group "
                "sums its members, each with its weight: members = {a = 1.0, b = 0.5})",
            )
        ]
    section = {k: v for k, v in section.items() if k != "kind"}
    members = section.get("members", {})
    if isinstance(members, Mapping):
        return section, []
    if isinstance(members, (list, tuple)) and all(isinstance(m, str) for m in members):
        return {**section, "members": {m: 1.0 for m in members}}, []
    if isinstance(members, (list, tuple)):
        return None, [
            (f"{join(path, 'members')}[{i}]", f"expected a term name (str), got {_describe(m)}")
            for i, m in enumerate(members)
            if not isinstance(m, str)
        ]
    return None, [
        (join(path, "members"), f"expected a list of str, got {_describe(members)} (or a table of term = weight)")
    ]
