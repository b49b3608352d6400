"""Recipes: named starting configs, as data, that a distribution declares in the entry-point group
``distill.recipes``; a config file names one with ``recipe = "..."`` and changes it term by term.

The core ships only the empty recipe ``"none"``. A recipe may also bring a reader for its older file
layouts (``upgrade``), so files written for an earlier API keep loading, with errors at the paths the user
wrote. Recipes are read once per process, on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from distill_core.config.converter import Problem
from distill_core.registry.entrypoints import declared_entry_points
from distill_core.util.gcpause import paused_gc

GROUP = "distill.recipes"
NONE = "none"
DEFAULT = "vae"  # the recipe a file without ``recipe =`` (and ``LossConfig()``) starts from


@attrs.frozen
class Upgrade:
    """A mapping read from an older layout: the generic mapping, the problems only that layout has, and
    how to write a generic error path the way the user wrote it."""

    data: Mapping[str, Any]
    problems: list[Problem] = attrs.Factory(list)
    rename: Callable[[str], str] = str


@attrs.frozen
class Recipe:
    """Terms (by section, as a file writes them), groups, the fallback group and the batch's layouts.

    ``distributions`` names the distribution that provides each term, for the error when one is missing;
    ``upgrade`` returns an Upgrade for a mapping in one of this recipe's older layouts, else None;
    ``group_kinds`` are the group kinds of those layouts (``kind = "..."``) that it reads.
    """

    terms: Mapping[str, Any] = attrs.Factory(dict)
    groups: Mapping[str, Any] = attrs.Factory(dict)
    fallback: str | None = None
    batch: Mapping[str, str] = attrs.Factory(dict)
    distributions: Mapping[str, str] = attrs.Factory(dict)
    upgrade: Callable[[Mapping[str, Any]], Upgrade | None] | None = None
    group_kinds: tuple[str, ...] = ()


class RecipeError(LookupError):
    """A recipe's entry point failed to load or is not a Recipe: names the entry point."""


_found: dict[str, Recipe] | None = None
_lock = threading.Lock()


def _discover() -> dict[str, Recipe]:
    out: dict[str, Recipe] = {}
    for ep, _, _ in declared_entry_points(GROUP):
        try:
            recipe = ep.load()
        except Exception as exc:  # one broken recipe distribution never hides the others
            recipe = RecipeError(f"recipe {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}")
        if not isinstance(recipe, (Recipe, RecipeError)):
            recipe = RecipeError(
                f"recipe {ep.name!r} ({ep.value}) is a {type(recipe).__name__}, expected a "
                "distill_core.registry.recipes.Recipe"
            )
        out.setdefault(ep.name, recipe)
    out.setdefault(NONE, Recipe())
    return out


def recipes() -> dict[str, Recipe | RecipeError]:
    """Every recipe by name (a RecipeError in place of one that failed to load), discovered once."""
    global _found
    if _found is None:
        with _lock, paused_gc():
            if _found is None:
                _found = _discover()
    return dict(_found)


def names() -> list[str]:
    """The recipes' names as messages list them: the default first, then the rest by name, ``none`` last (the
    same on every machine, whatever order the distributions were installed in)."""
    found = recipes()
    rest = sorted(name for name in found if name not in (DEFAULT, NONE))
    return ([DEFAULT] if DEFAULT in found else []) + rest + [NONE]


def listing() -> list[dict[str, Any]]:
    """Each installed recipe as ``distill-loss plugins`` shows it: where it comes from (distribution, version,
    entry point), its terms with their weights and distributions, the batch it reads, or why it is unusable."""
    found = recipes()
    rows: list[dict[str, Any]] = []
    for ep, distribution, version in declared_entry_points(GROUP):
        recipe = found.get(ep.name)
        if any(row["name"] == ep.name for row in rows) or recipe is None:
            continue  # a name declared twice: the first distribution on sys.path counts, as in _discover
        row: dict[str, Any] = {
            "name": ep.name,
            "distribution": distribution,
            "version": version,
            "entry_point": ep.value,
        }
        if isinstance(recipe, RecipeError):
            row["error"] = str(recipe)
        else:
            row["terms"] = {
                name: {
                    "term": section.get("term", name) if isinstance(section, Mapping) else name,
                    "weight": section.get("weight", 1.0) if isinstance(section, Mapping) else 1.0,
                    "distribution": recipe.distributions.get(name),
                }
                for name, section in recipe.terms.items()
            }
            row["batch"] = dict(recipe.batch)
        rows.append(row)
    return rows


def get(name: str) -> Recipe:
    """The recipe called ``name``; RecipeError says why it is not usable."""
    found = recipes()
    recipe = found.get(name)
    if isinstance(recipe, Recipe):
        return recipe
    if recipe is not None:
        raise recipe
    raise RecipeError(f"unknown recipe {name!r}; installed recipes: {', '.join(sorted(found))}")


def older_group_kinds() -> tuple[str, ...]:
    """Every group kind an installed recipe's upgrade reads."""
    return tuple(k for r in recipes().values() if isinstance(r, Recipe) for k in r.group_kinds)


def upgrade(data: Mapping[str, Any]) -> Upgrade | None:
    """The first installed recipe's reading of ``data`` as one of its older layouts, or None."""
    for recipe in recipes().values():
        if isinstance(recipe, Recipe) and recipe.upgrade is not None:
            found = recipe.upgrade(data)
            if found is not None:
                return found
    return None
