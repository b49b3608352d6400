"""A LossConfig from a mapping or a file and back: recipes merged under the file, the core's keys of a
term's section split off, every problem collected with its path; ``check`` at the end."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from distill_core.config.converter import (
    ConfigError,
    Problem,
    _describe,
    check_weight,
    converter,
    did_you_mean,
    format_mapping,
    join,
    paths_relative_to,
    problems_from,
    read_mapping,
    structure_checked,
    unstructure,
    write_mapping,
)
from distill_core.config.groups import GroupConfig, group_section
from distill_core.config.schedules import UpdateSchedule, Weight
from distill_core.loss.balancer import BalancerConfig
from distill_core.loss.checks import checked_plan, find_term
from distill_core.loss.model import BINDING_KEYS, TOP_LEVEL_KEYS, LossConfig, TermBinding, name_problem
from distill_core.registry import recipes
from distill_core.registry.discovery import Registry, get_registry
from distill_core.registry.provenance import parse_pins, term_origins
from distill_core.terms.pit import PITConfig
from distill_core.util.gcpause import paused_gc

_DEFAULT: tuple[Registry, LossConfig] | None = None


def recipe_default(registry: Registry | None = None) -> LossConfig:
    """The default recipe as a config, structured once per registry (shared: copy before handing out)."""
    global _DEFAULT
    registry = registry or get_registry()
    if _DEFAULT is None or _DEFAULT[0] is not registry:
        with paused_gc():  # structuring the recipe makes cattrs hooks: a burst of short-lived objects
            _DEFAULT = (registry, _structure({"recipe": recipes.DEFAULT}, registry, f"recipe {recipes.DEFAULT!r}"))
    return _DEFAULT[1]


def default_config(registry: Registry | None = None) -> LossConfig:
    """A fresh copy of the default recipe as a config."""
    return copy.deepcopy(recipe_default(registry))


def as_loss_config(value: Any) -> LossConfig:
    """A LossConfig from itself, a mapping (as ``load_config``), or an object that converts itself
    (``value.to_loss_config()``, e.g. an older API's config classes)."""
    if isinstance(value, LossConfig):
        return value
    if isinstance(value, Mapping):
        return load_config(value)
    convert = getattr(value, "to_loss_config", None)
    if callable(convert):
        converted = convert()
        if isinstance(converted, LossConfig):
            return converted
    raise TypeError(
        f"expected a LossConfig, a mapping of loss config keys or a config with to_loss_config(), "
        f"got {type(value).__name__}"
    )


def _merge(base: Mapping[str, Any], override: Any) -> Any:
    if not isinstance(override, Mapping):
        return override
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for k, v in override.items():
        out[k] = {**out[k], **v} if isinstance(out.get(k), dict) and isinstance(v, Mapping) else v
    return out


def _merge_terms(base: Mapping[str, Any], override: Mapping[str, Any]) -> Any:
    """The recipe's terms with the file's merged in by name; an instance the file redefines (its ``term`` names
    another term than the recipe's entry of that name) starts from the new term's defaults alone, never from
    the options the recipe gave its own term."""
    out = _merge(base, override)
    for name, section in override.items():
        was = base.get(name)
        if isinstance(section, Mapping) and isinstance(was, Mapping) and "term" in section:
            if section["term"] != was.get("term", name):
                out[name] = dict(section)
    return out


def _structure(data: Any, registry: Registry | None, source: str | None) -> LossConfig:
    """Structure a config, an older layout included; its ``required_plugins`` tell a missing term's distribution."""
    if not isinstance(data, Mapping):
        raise ConfigError([("", f"expected a table of loss config keys, got {type(data).__name__}")], source)
    older = recipes.upgrade(data)
    if older is None:
        return _structure_pinned(data, registry, source)
    try:
        config = _structure_pinned(older.data, registry, source)
    except ConfigError as exc:
        raise ConfigError([(older.rename(p), r) for p, r in older.problems + exc.problems], source) from None
    if older.problems:
        raise ConfigError(older.problems, source)
    return config


def _structure_pinned(data: Mapping[str, Any], registry: Registry | None, source: str | None) -> LossConfig:
    pins = data.get("required_plugins", ())
    with term_origins(pins=[p for p in pins if isinstance(p, str)] if isinstance(pins, (list, tuple)) else ()):
        return _structure_generic(data, registry, source)


def _recipe(data: Mapping[str, Any], problems: list[Problem]) -> recipes.Recipe:
    name = data.get("recipe", recipes.DEFAULT)
    known = recipes.recipes()
    if not isinstance(name, str) or name not in known:
        problems.append(("recipe", f"expected one of {', '.join(map(repr, recipes.names()))}, got {_describe(name)}"))
        return recipes.get(recipes.NONE)
    try:
        return recipes.get(name)
    except recipes.RecipeError as exc:  # installed, but its entry point does not load
        problems.append(("recipe", str(exc)))
        return recipes.get(recipes.NONE)


def _structure_generic(data: Mapping[str, Any], registry: Registry | None, source: str | None) -> LossConfig:
    registry_ = registry or get_registry()
    problems: list[Problem] = []
    for key in data:
        if key not in TOP_LEVEL_KEYS and key in registry_ and "terms" in data:
            problems.append(
                (
                    str(key),
                    f"unknown key; a term's settings go under terms (the table [terms.{key}]), "
                    "not at the top level beside terms",
                )
            )
        elif key not in TOP_LEVEL_KEYS:
            problems.append(
                (
                    str(key),
                    f"unknown key{did_you_mean(str(key), TOP_LEVEL_KEYS)} (valid keys: {', '.join(TOP_LEVEL_KEYS)})",
                )
            )
    recipe = _recipe(data, problems)
    sections: dict[str, Any] = {}
    for table, base in (("terms", recipe.terms), ("groups", recipe.groups)):
        raw = data.get(table, {})
        if not isinstance(raw, Mapping):
            problems.append((table, f"expected a table of {table} by name, got {type(raw).__name__}"))
            raw = {}
        sections[table] = _merge_terms(base, raw) if table == "terms" else _merge(base, raw)

    terms: dict[str, Any] = {}
    bindings: dict[str, TermBinding] = {}
    unknown = 0  # unknown terms so far: past the first few, each is said in a few words (find_term)
    with term_origins(providers=recipe.distributions):
        for name, section in sections["terms"].items():
            path = join("terms", str(name))
            bad_name = name_problem(name)
            if bad_name:
                problems.append((path, bad_name))
                continue
            binding, section, found = _binding(section, path)
            problems += found
            if binding is not None:
                bindings[name] = binding
            term = binding.term if binding is not None and binding.term else str(name)
            info, why = find_term(registry_, term, unknown)
            if info is None:
                unknown += 1
                problems.append((join(path, "term") if term != name else path, why))
                continue
            cfg, found = structure_checked(section, info.config_class, path)
            problems += found
            if cfg is not None:
                terms[name] = cfg

    groups: dict[str, GroupConfig] = {}
    for name, section in sections["groups"].items():
        path = join("groups", str(name))
        section, found = group_section(section, path, recipes.older_group_kinds())
        problems += found
        if section is None:
            continue
        group, found = structure_checked(section, GroupConfig, path)
        problems += found
        if group is not None:
            groups[name] = group

    fallback = data.get("fallback", recipe.fallback)
    if fallback is not None and not isinstance(fallback, str):
        problems.append(("fallback", f"expected a group name, got {_describe(fallback)}"))
        fallback = None
    pins = data.get("required_plugins", ())
    if not (isinstance(pins, (list, tuple)) and all(isinstance(p, str) for p in pins)):
        problems.append(("required_plugins", f"expected a list of requirement strings, got {_describe(pins)}"))
        pins = ()
    problems += parse_pins(pins)
    batch = _merge(recipe.batch, data.get("batch", {}))
    if not (isinstance(batch, Mapping) and all(isinstance(v, str) for v in batch.values())):
        problems.append(
            (
                "batch",
                f'expected a table of batch key = "layout" strings (e.g. recon = '
                f'"B, C, N"), got {_describe(data.get("batch"))}',
            )
        )
        batch = {}
    balancer, found = structure_checked(data.get("balancer", {}), BalancerConfig, "balancer")
    problems += found
    config = LossConfig.of(terms, groups, fallback, tuple(pins), bindings, batch, balancer)
    if not problems:
        problems += checked_plan(config, registry_)[1]
    if problems:
        raise ConfigError(problems, source)
    return config


def _binding(section: Any, path: str) -> tuple[TermBinding | None, Any, list[Problem]]:
    """Split the core's keys (``term``, ``inputs``) off a term's section: (binding or None, the rest, problems)."""
    if not isinstance(section, Mapping) or not any(k in section for k in BINDING_KEYS):
        return None, section, []
    rest = {k: v for k, v in section.items() if k not in BINDING_KEYS}
    problems: list[Problem] = []
    term = section.get("term")
    if term is not None and not isinstance(term, str):
        problems.append((join(path, "term"), f"expected a registered term's name, got {_describe(term)}"))
        term = None
    inputs = section.get("inputs", {})
    if not isinstance(inputs, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in inputs.items()):
        problems.append(
            (
                join(path, "inputs"),
                f'expected a table of input = "batch key" strings (e.g. '
                f'{{recon = "recon_wave"}}), got {_describe(inputs)}',
            )
        )
        inputs = {}
    pit = None
    if "pit" in section:
        pit, found = structure_checked(section["pit"], PITConfig, join(path, "pit"))
        problems += found
    outputs, found = _output_weights(section.get("outputs", {}), join(path, "outputs"))
    problems += found
    update = None
    if "update" in section:
        update, found = structure_checked(section["update"], UpdateSchedule, join(path, "update"))
        problems += found
    return TermBinding(term, dict(inputs), pit, outputs, update), rest, problems


def _output_weights(raw: Any, path: str) -> tuple[dict[str, Weight], list[Problem]]:
    """``outputs = {main = 1.0, aux = {schedule = ...}}``: each output's weight, structured as any weight."""
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        return {}, [
            (path, f"expected a table of output = weight (e.g. {{main = 1.0, aux = 0.5}}), got {_describe(raw)}")
        ]
    weights: dict[str, Weight] = {}
    problems: list[Problem] = []
    for output, value in raw.items():
        try:
            weights[output] = converter.structure(value, cast(Any, Weight))  # a Union: the weight hook
        except Exception as exc:  # the weight hook's and the schedules' own errors, flattened with their path
            problems += problems_from(exc, join(path, output))
            continue
        reason = check_weight(weights[output])
        if reason:
            problems.append((join(path, output), reason))
    return weights, problems


def _unstructure_term(config: LossConfig, name: str) -> dict[str, Any]:
    binding = config.bindings.get(name)
    extra: dict[str, Any] = {}
    if binding is not None and binding.term:
        extra["term"] = binding.term
    if binding is not None and binding.inputs:
        extra["inputs"] = dict(binding.inputs)
    if binding is not None and binding.pit is not None:
        extra["pit"] = unstructure(binding.pit)
    if binding is not None and binding.outputs:
        extra["outputs"] = {k: unstructure(v) for k, v in binding.outputs.items()}
    if binding is not None and binding.update is not None:
        extra["update"] = unstructure(binding.update)
    return {**extra, **unstructure(config.terms[name])}


def _unstructure(config: LossConfig) -> dict[str, Any]:
    return {
        "recipe": "none",  # the file lists every term, so it loads back equal whatever the recipe
        "batch": dict(config.batch),
        "balancer": unstructure(config.balancer),
        "terms": {name: _unstructure_term(config, name) for name in config.terms},
        "groups": {name: unstructure(g) for name, g in config.groups.items()},
        "fallback": config.fallback,
        "required_plugins": list(config.required_plugins),
    }


def structure_config(data: Any) -> LossConfig:
    """``converter.structure(data, LossConfig)``: as ``load_config`` of a mapping."""
    return _structure(data, None, None)


def unstructure_config(config: LossConfig) -> dict[str, Any]:
    """``converter.unstructure(config)``: the table ``dump_config`` writes."""
    return _unstructure(config)


def load_config(source: str | os.PathLike | Mapping[str, Any], registry: Registry | None = None) -> LossConfig:
    """A LossConfig from a .toml/.json/.yaml path or a mapping (e.g. ``OmegaConf.to_container(cfg)``). From a
    path, a term's file-naming fields (``PATH_RELATIVE_TO_FILE``) that are relative are read from its folder."""
    if isinstance(source, Mapping):
        return _structure(source, registry, None)
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError([("", f"expected a path or a mapping, got {type(source).__name__}")])
    data = read_mapping(source)
    with paths_relative_to(Path(os.path.abspath(source)).parent):
        return _structure(data, registry, str(source))


def _dumped(config: Any, what: str) -> dict[str, Any]:
    """The table of any config CombinedLoss takes (a LossConfig, a mapping as ``load_config`` reads it, the seed's
    LossConfig or another with ``to_loss_config()``); anything else is a TypeError naming what ``what`` takes."""
    try:
        resolved = as_loss_config(config)
    except TypeError:
        raise TypeError(
            f"{what}: expected a LossConfig, a mapping of loss config keys, or a config with to_loss_config() "
            f"(e.g. the seed's LossConfig), got {type(config).__name__}"
        ) from None
    return _unstructure(resolved)


def dumps_config(config: LossConfig | Any, suffix: str = ".toml") -> str:
    """The text ``dump_config`` would write for a file with this suffix."""
    return format_mapping(_dumped(config, "dumps_config"), suffix)


def dump_config(config: LossConfig | Any, path: str | os.PathLike) -> Path:
    """Write ``config`` (anything CombinedLoss takes: a LossConfig, a mapping, the seed's LossConfig) to ``path``
    (format from the suffix) so that ``load_config`` gives back the LossConfig it stands for."""
    return write_mapping(_dumped(config, "dump_config"), path)
