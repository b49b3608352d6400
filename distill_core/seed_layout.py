"""The seed's config layout, ``{"stft": {...}, "reconstruction": {...}, "kl": {...}}``, read as the generic one.

That is what ``dataclasses.asdict`` gave for the seed's LossConfig. Its ``kl`` section spells the weight as
``weight_max`` and ``warmup_fraction`` (a linear warm-up); the other two sections already use the generic
field names. Errors keep the paths the user wrote (``kl.weight_mx``), not the generic ones.
"""

from __future__ import annotations

from typing import Any, Mapping

from .config import ConfigError, Problem, did_you_mean

SECTIONS = ("stft", "reconstruction", "kl")
KL_KEYS = ("weight_max", "warmup_fraction", "free_bits")
_SEED_KL_DEFAULTS = {"weight_max": 0.01, "warmup_fraction": 0.3}


def is_seed_layout(data: Mapping[str, Any], generic_keys: tuple[str, ...]) -> bool:
    """A mapping in the seed's layout: one of its sections at the top and none of the generic keys."""
    return any(k in data for k in SECTIONS) and not any(k in data for k in generic_keys)


def to_generic(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """The generic mapping (terms, groups) for a seed-layout one, and the problems only the seed layout has."""
    problems: list[Problem] = []
    for key in data:
        if key not in SECTIONS:
            problems.append((str(key), f"unknown key{did_you_mean(str(key), SECTIONS)} (the seed's layout has: "
                                       f"{', '.join(SECTIONS)})"))
    terms: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    for name in ("stft", "kl"):
        if name in data:
            terms[name] = data[name]
    kl = data.get("kl")
    if isinstance(kl, Mapping) and "weight" not in kl:
        for key in kl:
            if key not in KL_KEYS:
                problems.append((f"kl.{key}", f"unknown key{did_you_mean(str(key), KL_KEYS)} "
                                              f"(valid keys: {', '.join(KL_KEYS)})"))
        warmup = {k: kl.get(k, default) for k, default in _SEED_KL_DEFAULTS.items()}
        terms["kl"] = {"weight": {"schedule": "linear_warmup", "max": warmup["weight_max"],
                                  "warmup_fraction": warmup["warmup_fraction"]},
                       **({"free_bits": kl["free_bits"]} if "free_bits" in kl else {})}
    if "reconstruction" in data:
        section = data["reconstruction"]
        groups["reconstruction"] = {"kind": "reconstruction", **section} if isinstance(section, Mapping) else section
    return {"terms": terms, "groups": groups}, problems


def seed_paths(error: ConfigError) -> ConfigError:
    """The same problems under the seed's paths: ``terms.stft.x`` -> ``stft.x``, ``groups.reconstruction`` ->
    ``reconstruction``, and the KL weight's schedule fields under their seed names."""
    renamed = {"terms.kl.weight.max": "kl.weight_max", "terms.kl.weight.warmup_fraction": "kl.warmup_fraction"}

    def rename(path: str) -> str:
        for old, new in renamed.items():
            if path == old or path.startswith(old + "."):
                return new + path[len(old):]
        for prefix in ("terms.", "groups."):
            if path.startswith(prefix) and path[len(prefix):].split(".")[0] in SECTIONS:
                return path[len(prefix):]
        return path

    return ConfigError([(rename(p), r) for p, r in error.problems], error.source)
