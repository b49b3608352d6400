"""The seed's older file layouts, read as the generic one (the ``vae`` recipe's ``upgrade``).

- The seed's own layout, ``{"stft": {...}, "reconstruction": {...}, "kl": {...}}``: what
  ``dataclasses.asdict`` gives for the seed's LossConfig. Its ``kl`` section spells the weight as
  ``weight_max`` and ``warmup_fraction`` (a linear warm-up).
- This project's first files, whose reconstruction group is ``kind = "reconstruction"`` with
  ``magnitude_weight`` and ``if_weight`` (or changes the recipe's with those keys): now a group whose
  members carry those weights.

Errors keep the paths the user wrote (``kl.weight_mx``, ``groups.reconstruction.if_weight``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distill_core.config.converter import Problem, did_you_mean, join
from distill_core.registry.recipes import Upgrade

SECTIONS = ("stft", "reconstruction", "kl")
KL_KEYS = ("weight_max", "warmup_fraction", "free_bits")
_SEED_KL_DEFAULTS = {"weight_max": 0.01, "warmup_fraction": 0.3}
GROUP_KIND = "reconstruction"
# The seed's ReconLossConfig: its fields, defaults, and which member each member weight is.
RECON_DEFAULTS = {"weight": 0.1, "magnitude_weight": 1.0, "if_weight": 0.5}
MEMBER_WEIGHTS = {"magnitude_weight": "mag_recon", "if_weight": "if_recon"}
_RECON_KEYS = (*RECON_DEFAULTS, "members", "key")
_GENERIC_KEYS = ("recipe", "terms", "groups", "fallback", "required_plugins", "batch", "balancer")


def is_seed_layout(data: Mapping[str, Any]) -> bool:
    """A mapping in the seed's layout: one of its sections at the top and none of the generic keys."""
    return any(k in data for k in SECTIONS) and not any(k in data for k in _GENERIC_KEYS)


def reconstruction_group(section: Any, path: str, *, whole: bool = True) -> tuple[Any, list[Problem]]:
    """The seed's reconstruction settings as a generic group whose members carry the weights.

    ``whole``: the section is a whole group (the seed's ReconLossConfig defaults fill what it leaves out);
    otherwise it changes the recipe's group, and only the member weights are written out in full.
    """
    if not isinstance(section, Mapping):
        return section, []
    problems = [
        (join(path, str(k)), f"unknown key{did_you_mean(str(k), _RECON_KEYS)} (valid keys: {', '.join(_RECON_KEYS)})")
        for k in section
        if k not in _RECON_KEYS
    ]
    values = {k: section.get(k, default) for k, default in RECON_DEFAULTS.items()}
    group: dict[str, Any] = {"members": {member: values[field] for field, member in MEMBER_WEIGHTS.items()}}
    if whole or "weight" in section:
        group["weight"] = values["weight"]
    if whole or "key" in section:
        group["key"] = section.get("key", "recon_loss")
    return group, problems


def _kl_term(kl: Mapping[str, Any], problems: list[Problem]) -> dict[str, Any]:
    for key in kl:
        if key not in KL_KEYS:
            problems.append(
                (f"kl.{key}", f"unknown key{did_you_mean(str(key), KL_KEYS)} (valid keys: {', '.join(KL_KEYS)})")
            )
    warmup = {k: kl.get(k, default) for k, default in _SEED_KL_DEFAULTS.items()}
    return {
        "weight": {
            "schedule": "linear_warmup",
            "max": warmup["weight_max"],
            "warmup_fraction": warmup["warmup_fraction"],
        },
        **({"free_bits": kl["free_bits"]} if "free_bits" in kl else {}),
    }


def seed_to_generic(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """The generic mapping (terms, groups) for a seed-layout one, and the problems only the seed layout has."""
    problems: list[Problem] = []
    for key in data:
        if key not in SECTIONS:
            problems.append(
                (
                    str(key),
                    f"unknown key{did_you_mean(str(key), SECTIONS)} (the seed's layout has: {', '.join(SECTIONS)})",
                )
            )
    terms: dict[str, Any] = {name: data[name] for name in ("stft", "kl") if name in data}
    kl = data.get("kl")
    if isinstance(kl, Mapping) and "weight" not in kl:
        terms["kl"] = _kl_term(kl, problems)
    groups: dict[str, Any] = {}
    if "reconstruction" in data:
        groups["reconstruction"], found = reconstruction_group(data["reconstruction"], "reconstruction")
        problems += found
    return {"terms": terms, "groups": groups}, problems


def _member_path(path: str, prefix: str) -> str | None:
    """``<prefix>.members.mag_recon`` -> ``<prefix>.magnitude_weight`` (the field the user wrote)."""
    for field, member in MEMBER_WEIGHTS.items():
        old = f"{prefix}.members.{member}"
        if path == old or path.startswith(old + "."):
            return f"{prefix}.{field}{path[len(old) :]}"
    return None


def seed_path(path: str) -> str:
    """A generic error path under the seed's: ``terms.stft.x`` -> ``stft.x``, ``groups.reconstruction`` ->
    ``reconstruction``, and the KL weight's schedule fields and the member weights under their seed names."""
    renamed = {"terms.kl.weight.max": "kl.weight_max", "terms.kl.weight.warmup_fraction": "kl.warmup_fraction"}
    for old, new in renamed.items():
        if path == old or path.startswith(old + "."):
            return new + path[len(old) :]
    member = _member_path(path, "groups.reconstruction")
    if member is not None:
        path = member
    for prefix in ("terms.", "groups."):
        if path.startswith(prefix) and path[len(prefix) :].split(".")[0] in SECTIONS:
            return path[len(prefix) :]
    return path


def _legacy_groups(data: Mapping[str, Any]) -> list[str]:
    groups = data.get("groups")
    if not isinstance(groups, Mapping):
        return []
    return [
        name
        for name, g in groups.items()
        if isinstance(g, Mapping) and (g.get("kind") == GROUP_KIND or any(field in g for field in MEMBER_WEIGHTS))
    ]


def upgrade(data: Mapping[str, Any]) -> Upgrade | None:
    """The generic reading of a seed-layout mapping or of a file with ``kind = "reconstruction"`` groups."""
    if is_seed_layout(data):
        generic, problems = seed_to_generic(data)
        return Upgrade(generic, problems, seed_path)
    legacy = _legacy_groups(data)
    if not legacy:
        return None
    groups = dict(data["groups"])
    problems = []
    for name in legacy:
        section = {k: v for k, v in groups[name].items() if k != "kind"}
        whole = groups[name].get("kind") == GROUP_KIND
        groups[name], found = reconstruction_group(section, join("groups", name), whole=whole)
        problems += found

    def rename(path: str) -> str:
        for name in legacy:
            member = _member_path(path, join("groups", name))
            if member is not None:
                return member
        return path

    return Upgrade({**data, "groups": groups}, problems, rename)
