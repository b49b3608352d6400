"""LossConfig: terms by registered name, weighted groups and plugin pins, in one generic structure.

``LossConfig()`` is the standard VAE recipe; a file may add, change or replace terms by name.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import attrs

from .config import (ConfigError, Problem, _describe, check_weight, converter, did_you_mean, format_mapping, join,
                     read_mapping, structure_checked, unstructure, write_mapping)
from .balancer import BalancerConfig
from .layouts import Reader
from .layouts import conflicts as layout_conflicts
from .recipe import GROUP_KINDS, RECIPES, GroupConfig

if TYPE_CHECKING:
    from .plugins import Registry

TOP_LEVEL_KEYS = ("recipe", "terms", "groups", "fallback", "required_plugins", "batch", "balancer")
BINDING_KEYS = ("term", "inputs")  # keys of a term's section that the core reads, not the term's config
# Keys of CombinedLoss's output (and of validation's) that a group's ``key`` may not take.
RESERVED_KEYS = ("total_loss", "nonfinite", "kl_divergence")


def _registry(registry: "Registry | None") -> "Registry":
    from .plugins import get_registry

    return registry or get_registry()


def _recipe_terms() -> dict[str, Any]:
    return _structure(RECIPES["vae"], None, "recipe 'vae'").terms


def _recipe_groups() -> dict[str, GroupConfig]:
    return _structure({"recipe": "vae"}, None, "recipe 'vae'").groups


@attrs.define
class TermBinding:
    """Which registered term a config entry instantiates and which batch keys feed its inputs.

    ``[terms.stft_wave] term = "stft"`` makes a second ``stft`` under its own name (output ``stft_wave_loss``);
    ``inputs = {recon = "recon_wave"}`` feeds the term's logical input ``recon`` from the batch key
    ``recon_wave``. Unmapped inputs read the batch key of the same name.
    """

    term: str | None = None
    inputs: dict[str, str] = attrs.Factory(dict)


_FIELDS = ("terms", "groups", "fallback", "required_plugins", "bindings", "batch", "balancer")


@attrs.define(init=False)
class LossConfig:
    """Every loss term's config by registered name, the groups they sum into, and plugin pins.

    ``LossConfig()`` is the VAE recipe. The seed's constructor works too, keyword or positional in its
    order: ``LossConfig(stft=STFTLossConfig(...), reconstruction=ReconLossConfig(...), kl=KLLossConfig(...))``
    replaces those parts of the recipe. Read or assign ``config.<name>`` for a term's or group's config:
    ``config.stft.fft_sizes``, ``config.reconstruction.if_weight``, ``config.kl = KLLossConfig(0.02, 0.5)``.
    """

    terms: dict[str, Any]
    groups: dict[str, GroupConfig]
    fallback: str | None
    required_plugins: tuple[str, ...]
    bindings: dict[str, TermBinding]
    batch: dict[str, str]
    balancer: BalancerConfig

    def __init__(self, stft: Any = None, reconstruction: GroupConfig | None = None, kl: Any = None, *,
                 terms: Mapping[str, Any] | None = None, groups: Mapping[str, GroupConfig] | None = None,
                 fallback: str | None = "reconstruction", required_plugins: tuple[str, ...] = (),
                 bindings: Mapping[str, TermBinding] | None = None, batch: Mapping[str, str] | None = None,
                 balancer: BalancerConfig | None = None) -> None:
        for name, value in (("stft", stft), ("reconstruction", reconstruction), ("kl", kl)):
            if isinstance(value, Mapping):
                raise TypeError(f"LossConfig({name}=...): expected a {name} config object, got a mapping; "
                                f"the positional order is the seed's (stft, reconstruction, kl): pass terms= "
                                f"and groups= by keyword, or use load_config for a mapping")
        terms_default = terms is None
        terms = _recipe_terms() if terms is None else dict(terms)
        groups = _recipe_groups() if groups is None else dict(groups)
        for name, value in (("stft", stft), ("kl", kl)):
            if value is not None:
                terms[name] = value
        if reconstruction is not None:
            groups["reconstruction"] = reconstruction
        batch = dict(RECIPES["vae"]["batch"]) if batch is None and terms_default else dict(batch or {})
        self.__attrs_init__(terms, groups, fallback, tuple(required_plugins), dict(bindings or {}), batch,
                            balancer if balancer is not None else BalancerConfig())

    def term_of(self, name: str) -> str:
        """The registered term an entry instantiates: its ``term =``, or its own name."""
        binding = self.bindings.get(name)
        return binding.term if binding is not None and binding.term else name

    def inputs_of(self, name: str) -> dict[str, str]:
        """An entry's input mapping (logical input -> batch key); empty when it reads its own names."""
        binding = self.bindings.get(name)
        return dict(binding.inputs) if binding is not None else {}

    @classmethod
    def of(cls, terms: Mapping[str, Any], groups: Mapping[str, GroupConfig] | None = None,
           fallback: str | None = None, required_plugins: tuple[str, ...] = (),
           bindings: Mapping[str, TermBinding] | None = None, batch: Mapping[str, str] | None = None,
           balancer: BalancerConfig | None = None) -> "LossConfig":
        """A config with exactly these terms (no recipe defaults)."""
        return cls(terms=dict(terms), groups=dict(groups or {}), fallback=fallback,
                   required_plugins=tuple(required_plugins), bindings=bindings, batch=batch or {},
                   balancer=balancer)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        terms = object.__getattribute__(self, "terms")
        groups = object.__getattribute__(self, "groups")
        if name in terms:
            return terms[name]
        if name in groups:
            return groups[name]
        raise AttributeError(f"LossConfig has no term or group {name!r}{did_you_mean(name, [*terms, *groups])}; "
                             f"terms: {', '.join(terms) or 'none'}; groups: {', '.join(groups) or 'none'}")

    def __setattr__(self, name: str, value: Any) -> None:
        """``config.stft = ...`` replaces a term's config (a group's, for a group name), as the seed allows."""
        if name in _FIELDS or name.startswith("_"):
            super().__setattr__(name, value)
        elif name in self.groups or isinstance(value, GroupConfig):
            self.groups[name] = value
        else:
            self.terms[name] = value


def _instance_clash(registry: "Registry", name: str, term: str) -> Problem:
    return (join("terms", name), f"{name!r} is the name of the installed term from {registry.get(name).provenance}; "
                                 f"name this {term!r} instance differently (e.g. '{term}_{name}')")


def check(config: LossConfig, registry: "Registry | None" = None) -> list[Problem]:
    """Cross-field problems of a whole config: weights, group members, fallback, term classes."""
    from .plugins import UnknownTermError

    registry = _registry(registry)
    problems: list[Problem] = []
    readers: dict[str, list[Reader]] = {}
    read_keys: list[str] = []
    for name, cfg in config.terms.items():
        path = join("terms", name)
        term = config.term_of(name)
        try:
            info = registry.get(term)
        except UnknownTermError as exc:
            problems.append((join(path, "term") if term != name else path, str(exc)))
            continue
        if term != name and name in registry.terms:
            problems.append(_instance_clash(registry, name, term))
        if not isinstance(cfg, info.config_class):
            problems.append((path, f"expected a {info.config_class.__name__}, got {type(cfg).__name__}"))
            continue
        reason = check_weight(cfg.weight)
        if reason:
            problems.append((join(path, "weight"), reason))
        requires = tuple(getattr(info.cls, "requires", ()))
        inputs = config.inputs_of(name)
        for logical, key in inputs.items():
            if logical not in requires:
                problems.append((join(join(path, "inputs"), logical),
                                 f"{term!r} has no input {logical!r}{did_you_mean(logical, requires)}; its inputs: "
                                 f"{', '.join(requires) or 'none'}"))
        read_keys += [inputs.get(r, r) for r in requires]
        layouts = info.cls.input_layouts(cfg) if hasattr(info.cls, "input_layouts") else {}
        for logical in requires:
            if logical in layouts:
                readers.setdefault(inputs.get(logical, logical), []).append((name, logical, layouts[logical]))
    problems += layout_conflicts(readers, config.batch)
    owner: dict[str, str] = {}
    for gname, group in config.groups.items():
        path = join("groups", gname)
        reason = check_weight(group.weight)
        if reason:
            problems.append((join(path, "weight"), reason))
        for member, w in group.member_weights().items():
            if not (math.isfinite(w) and w >= 0):
                problems.append((path, f"member {member!r} weight: expected a finite weight >= 0, got {w!r}"))
            if member not in config.terms:
                problems.append((path, f"member {member!r} is not a configured term"
                                       f"{did_you_mean(member, config.terms)}; terms: "
                                       f"{', '.join(config.terms) or 'none'}"))
            elif member in owner:
                problems.append((path, f"term {member!r} is already in group {owner[member]!r}; "
                                       "a term belongs to at most one group"))
            else:
                owner[member] = gname
    produced = {f"{t}_loss": f"term {t!r}" for t in config.terms}
    for gname, group in config.groups.items():
        key = group.key or f"{gname}_loss"
        where = join(join("groups", gname), "key") if group.key else join("groups", gname)
        if key in RESERVED_KEYS:
            problems.append((where, f"output key {key!r} is reserved ({', '.join(RESERVED_KEYS)} and each term's "
                                    "<term>_loss); set another key"))
        elif key in produced:
            problems.append((where, f"output key {key!r} is produced twice (also by {produced[key]}); "
                                    "rename the group or set its key"))
        produced.setdefault(key, f"group {gname!r}")
    if config.fallback is not None and config.fallback not in config.groups:
        problems.append(("fallback", f"expected a group name ({', '.join(config.groups) or 'no groups'}), "
                                     f"got {config.fallback!r}"))
    if config.balancer.enabled and not any(key == config.balancer.input for key in read_keys):
        problems.append(("balancer.input", f"no configured term reads batch key {config.balancer.input!r}; "
                                           f"the terms read: {', '.join(sorted(set(read_keys))) or 'nothing'}"))
    return problems


def _merge(base: Mapping[str, Any], override: Any) -> Any:
    if not isinstance(override, Mapping):
        return override
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for k, v in override.items():
        out[k] = {**out[k], **v} if isinstance(out.get(k), dict) and isinstance(v, Mapping) else v
    return out


def _structure(data: Any, registry: "Registry | None", source: str | None) -> LossConfig:
    """Structure a config; while it does, its ``required_plugins`` tell a missing term's distribution."""
    from .plugins import term_origins

    pins = data.get("required_plugins", ()) if isinstance(data, Mapping) else ()
    with term_origins(pins=[p for p in pins if isinstance(p, str)] if isinstance(pins, (list, tuple)) else ()):
        return _structure_layout(data, registry, source)


def _structure_layout(data: Any, registry: "Registry | None", source: str | None) -> LossConfig:
    if not isinstance(data, Mapping):
        raise ConfigError([("", f"expected a table of loss config keys, got {type(data).__name__}")], source)
    from . import seed_layout

    if not seed_layout.is_seed_layout(data, TOP_LEVEL_KEYS):
        return _structure_generic(data, registry, source)
    generic, problems = seed_layout.to_generic(data)
    try:
        config = _structure_generic(generic, registry, source)
    except ConfigError as exc:
        raise seed_layout.seed_paths(ConfigError(problems + exc.problems, source)) from None
    if problems:
        raise ConfigError(problems, source)
    return config


def _structure_generic(data: Mapping[str, Any], registry: "Registry | None", source: str | None) -> LossConfig:
    from .plugins import UnknownTermError

    registry_ = _registry(registry)
    problems: list[Problem] = []
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append((str(key), f"unknown key{did_you_mean(str(key), TOP_LEVEL_KEYS)} "
                                       f"(valid keys: {', '.join(TOP_LEVEL_KEYS)})"))
    recipe_name = data.get("recipe", "vae")
    if not isinstance(recipe_name, str) or recipe_name not in RECIPES:
        problems.append(("recipe", f"expected one of {', '.join(map(repr, RECIPES))}, got {_describe(recipe_name)}"))
        recipe_name = "none"
    recipe = RECIPES[recipe_name]
    sections: dict[str, Any] = {}
    for table in ("terms", "groups"):
        raw = data.get(table, {})
        if not isinstance(raw, Mapping):
            problems.append((table, f"expected a table of {table} by name, got {type(raw).__name__}"))
            raw = {}
        sections[table] = _merge(recipe[table], raw)

    terms: dict[str, Any] = {}
    bindings: dict[str, TermBinding] = {}
    for name, section in sections["terms"].items():
        path = join("terms", str(name))
        binding, section, found = _binding(section, path)
        problems += found
        if binding is not None:
            bindings[name] = binding
        term = binding.term if binding is not None and binding.term else str(name)
        if term != name and name in registry_.terms:
            problems.append(_instance_clash(registry_, str(name), term))
            continue
        try:
            info = registry_.get(term)
        except UnknownTermError as exc:
            problems.append((join(path, "term") if term != name else path, str(exc)))
            continue
        cfg, found = structure_checked(section, info.config_class, path)
        problems += found
        if cfg is not None:
            terms[name] = cfg

    groups: dict[str, GroupConfig] = {}
    for name, section in sections["groups"].items():
        path = join("groups", str(name))
        section = dict(section) if isinstance(section, Mapping) else section
        kind = section.pop("kind", "sum") if isinstance(section, dict) else "sum"
        if not isinstance(kind, str) or kind not in GROUP_KINDS:
            problems.append((join(path, "kind"), f"expected one of {', '.join(map(repr, GROUP_KINDS))}, "
                                                 f"got {_describe(kind)}"))
            continue
        group, found = structure_checked(section, GROUP_KINDS[kind], path)
        problems += found
        if group is not None:
            groups[name] = group

    fallback = data.get("fallback", recipe["fallback"])
    if fallback is not None and not isinstance(fallback, str):
        problems.append(("fallback", f"expected a group name, got {_describe(fallback)}"))
        fallback = None
    pins = data.get("required_plugins", ())
    if not (isinstance(pins, (list, tuple)) and all(isinstance(p, str) for p in pins)):
        problems.append(("required_plugins", f"expected a list of requirement strings, got {_describe(pins)}"))
        pins = ()
    from .pins import parse_pins

    problems += parse_pins(pins)
    batch = _merge(recipe["batch"], data.get("batch", {}))
    if not (isinstance(batch, Mapping) and all(isinstance(v, str) for v in batch.values())):
        problems.append(("batch", f"expected a table of batch key = \"layout\" strings (e.g. recon = "
                                  f"\"B, C, N\"), got {_describe(data.get('batch'))}"))
        batch = {}
    balancer, found = structure_checked(data.get("balancer", {}), BalancerConfig, "balancer")
    problems += found
    config = LossConfig.of(terms, groups, fallback, tuple(pins), bindings, batch, balancer)
    if not problems:
        problems += check(config, registry_)
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
    if not isinstance(inputs, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in inputs.items()):
        problems.append((join(path, "inputs"), f"expected a table of input = \"batch key\" strings (e.g. "
                                               f"{{recon = \"recon_wave\"}}), got {_describe(inputs)}"))
        inputs = {}
    return TermBinding(term, dict(inputs)), rest, problems


def _unstructure_term(config: LossConfig, name: str) -> dict[str, Any]:
    binding = config.bindings.get(name)
    extra: dict[str, Any] = {}
    if binding is not None and binding.term:
        extra["term"] = binding.term
    if binding is not None and binding.inputs:
        extra["inputs"] = dict(binding.inputs)
    return {**extra, **unstructure(config.terms[name])}


def _unstructure(config: LossConfig) -> dict[str, Any]:
    return {
        "recipe": "none",  # the file lists every term, so it loads back equal whatever the recipe
        "batch": dict(config.batch),
        "balancer": unstructure(config.balancer),
        "terms": {name: _unstructure_term(config, name) for name in config.terms},
        "groups": {name: {"kind": type(g).kind, **unstructure(g)} for name, g in config.groups.items()},
        "fallback": config.fallback,
        "required_plugins": list(config.required_plugins),
    }


converter.register_structure_hook(LossConfig, lambda data, _: _structure(data, None, None))
converter.register_unstructure_hook(LossConfig, _unstructure)


def load_config(source: str | os.PathLike | Mapping[str, Any], registry: "Registry | None" = None) -> LossConfig:
    """A LossConfig from a .toml/.json/.yaml path or a mapping (e.g. ``OmegaConf.to_container(cfg)``)."""
    if isinstance(source, Mapping):
        return _structure(source, registry, None)
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError([("", f"expected a path or a mapping, got {type(source).__name__}")])
    return _structure(read_mapping(source), registry, str(source))


def dumps_config(config: LossConfig, suffix: str = ".toml") -> str:
    """The text ``dump_config`` would write for a file with this suffix."""
    return format_mapping(_unstructure(config), suffix)


def dump_config(config: LossConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` to ``path`` (format from the suffix) so that ``load_config`` gives it back equal."""
    return write_mapping(_unstructure(config), path)
