"""LossConfig: terms by registered name, weighted groups and plugin pins, in one generic structure.

``LossConfig()`` is the default recipe (``recipes.DEFAULT``); a file may add, change or replace terms by
name, or start from another recipe (``recipe = "none"``: nothing but what the file lists).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import attrs

from distill_core.config.converter import (
    ConfigError,
    Problem,
    _describe,
    check_weight,
    converter,
    did_you_mean,
    format_mapping,
    join,
    problems_from,
    read_mapping,
    structure_checked,
    unstructure,
    write_mapping,
)
from distill_core.config.groups import GroupConfig, group_section
from distill_core.config.schedules import UpdateSchedule, Weight
from distill_core.loss.balancer import BalancerConfig
from distill_core.registry import recipes
from distill_core.registry.discovery import Registry, UnknownTermError, get_registry
from distill_core.registry.provenance import parse_pins, term_origins, unmet_pins
from distill_core.terms.layouts import Reader
from distill_core.terms.layouts import conflicts as layout_conflicts
from distill_core.terms.pit import PITConfig, refusal
from distill_core.terms.stateful import is_stateful
from distill_core.util.gcpause import paused_gc

TOP_LEVEL_KEYS = ("recipe", "terms", "groups", "fallback", "required_plugins", "batch", "balancer")
# keys of a term's section that the core reads, not the term's config
BINDING_KEYS = ("term", "inputs", "pit", "outputs", "update")
# Keys of CombinedLoss's output that a group's ``key`` (or a term's ``<name>_loss``) may not take.
RESERVED_KEYS = ("total_loss", "nonfinite")
NAME_RULE = "a term's name is a Python identifier (letters, digits, '_'; not empty, no '.', not starting with a digit)"


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a term entry (it becomes a module name and an output key ``<name>_loss``), or None."""
    if not isinstance(name, str) or not name.isidentifier():
        return f"bad term name {name!r}: {NAME_RULE}"
    if f"{name}_loss" in RESERVED_KEYS:
        return (
            f"term name {name!r} would write output key '{name}_loss', which is reserved ("
            f'{", ".join(RESERVED_KEYS)}); name this entry differently and set term = "..." to keep the term'
        )
    return None


def shared_input_problems(name: str, term: str, sources: Mapping[str, str], allowed: bool) -> list[Problem]:
    """Two logical inputs of one entry fed by one batch key (``target = "recon"``: the loss is then 0)."""
    if allowed:
        return []
    by_key: dict[str, list[str]] = {}
    for logical, key in sources.items():
        by_key.setdefault(key, []).append(logical)
    return [
        (
            join(join("terms", name), "inputs"),
            f"inputs {' and '.join(map(repr, logicals))} of {term!r} both read batch key {key!r}; map each to its "
            f"own key (a term compares its inputs: reading one key twice makes it trivially 0)",
        )
        for key, logicals in by_key.items()
        if len(logicals) > 1
    ]


def swapped_input_problems(name: str, term: str, sources: Mapping[str, str]) -> list[Problem]:
    """Two inputs of one entry that read each other's batch keys (``recon = "target", target = "recon"``)."""
    problems: list[Problem] = []
    for a, key in sources.items():
        if key != a and key in sources and sources[key] == a and a < key:
            problems.append(
                (
                    join(join("terms", name), "inputs"),
                    f"inputs {a!r} and {key!r} of {term!r} are swapped: its {key!r} reads batch key {a!r} "
                    f"and its {a!r} reads batch key {key!r}; remove the mapping, or map them to other keys",
                )
            )
    return problems


@attrs.define
class TermBinding:
    """Which registered term a config entry instantiates and which batch keys feed its inputs.

    ``[terms.fine] term = "spectral"`` makes a second ``spectral`` under its own name (output ``fine_loss``);
    ``inputs = {recon = "recon_wave"}`` feeds the term's logical input ``recon`` from the batch key
    ``recon_wave``. Unmapped inputs read the batch key of the same name. ``pit = {axis = 1}`` evaluates the
    term over the permutations of that source axis of its first input (``distill_core.terms.pit``).
    ``outputs = {main = 1.0, aux = 0.5}`` weighs a multi-output term's components (numbers or schedules),
    over the term's defaults; ``update = {every = 2}`` schedules a stateful term's update step.
    """

    term: str | None = None
    inputs: dict[str, str] = attrs.Factory(dict)
    pit: PITConfig | None = None
    outputs: dict[str, Weight] = attrs.Factory(dict)
    update: UpdateSchedule | None = None


_DEFAULT: tuple[Registry, LossConfig] | None = None


def _pins(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _default(registry: Registry | None = None) -> LossConfig:
    """The default recipe as a config, structured once per registry (shared: copy before handing out)."""
    global _DEFAULT
    registry = registry or get_registry()
    if _DEFAULT is None or _DEFAULT[0] is not registry:
        with paused_gc():  # structuring the recipe makes cattrs hooks: a burst of short-lived objects
            _DEFAULT = (registry, _structure({"recipe": recipes.DEFAULT}, registry, f"recipe {recipes.DEFAULT!r}"))
    return _DEFAULT[1]


def default_config(registry: Registry | None = None) -> LossConfig:
    """A fresh copy of the default recipe as a config."""
    return copy.deepcopy(_default(registry))


def _from_default(part: str) -> Any:
    return attrs.Factory(lambda: copy.deepcopy(getattr(_default(), part)))


@attrs.define(kw_only=True)
class LossConfig:
    """Every loss term's config by registered name, the groups they sum into, and plugin pins.

    Fields left out take the default recipe's (``LossConfig()`` is that recipe); ``LossConfig.of(terms)``
    holds exactly the terms given. ``fallback`` names the group whose sum replaces a non-finite total;
    ``batch`` declares the batch keys' layouts (``{"recon": "B, C, N"}``).
    """

    terms: dict[str, Any] = _from_default("terms")
    groups: dict[str, GroupConfig] = _from_default("groups")
    fallback: str | None = _from_default("fallback")
    required_plugins: tuple[str, ...] = attrs.field(default=(), converter=_pins)
    bindings: dict[str, TermBinding] = attrs.Factory(dict)
    batch: dict[str, str] = _from_default("batch")
    balancer: BalancerConfig = attrs.Factory(BalancerConfig)

    def term_of(self, name: str) -> str:
        """The registered term an entry instantiates: its ``term =``, or its own name."""
        binding = self.bindings.get(name)
        return binding.term if binding is not None and binding.term else name

    def inputs_of(self, name: str) -> dict[str, str]:
        """An entry's input mapping (logical input -> batch key); empty when it reads its own names."""
        binding = self.bindings.get(name)
        return dict(binding.inputs) if binding is not None else {}

    def pit_of(self, name: str) -> PITConfig | None:
        """An entry's permutation-invariant evaluation, or None."""
        binding = self.bindings.get(name)
        return binding.pit if binding is not None else None

    def output_weights(self, name: str, cls: type) -> dict[str, Weight]:
        """A multi-output entry's weight of each output: the term's defaults under its config, then the
        entry's ``outputs = {...}``; empty for a term with one output."""
        outputs = tuple(getattr(cls, "outputs", ()) or ())
        if not outputs:
            return {}
        binding = self.bindings.get(name)
        given = binding.outputs if binding is not None else {}
        own = getattr(cls, "output_weights", None)  # a prebuilt module need not be a LossTerm
        defaults = own(self.terms[name]) if callable(own) else {}
        return {o: given.get(o, defaults.get(o, 1.0)) for o in outputs}

    def update_of(self, name: str) -> UpdateSchedule:
        """When an entry's update step runs (every training batch unless its ``update = {...}`` says else)."""
        binding = self.bindings.get(name)
        return binding.update if binding is not None and binding.update is not None else UpdateSchedule()

    def sources(self, name: str, requires: tuple[str, ...]) -> dict[str, str]:
        """The term->key map of one entry: each logical input it requires -> the batch key that feeds it."""
        inputs = self.inputs_of(name)
        return {logical: inputs.get(logical, logical) for logical in requires}

    @classmethod
    def of(
        cls,
        terms: Mapping[str, Any],
        groups: Mapping[str, GroupConfig] | None = None,
        fallback: str | None = None,
        required_plugins: tuple[str, ...] = (),
        bindings: Mapping[str, TermBinding] | None = None,
        batch: Mapping[str, str] | None = None,
        balancer: BalancerConfig | None = None,
    ) -> LossConfig:
        """A config with exactly these terms (no recipe defaults)."""
        return cls(
            terms=dict(terms),
            groups=dict(groups or {}),
            fallback=fallback,
            required_plugins=required_plugins,
            bindings=dict(bindings or {}),
            batch=dict(batch or {}),
            balancer=balancer if balancer is not None else BalancerConfig(),
        )


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


# --- the one validation, shared by load_config, CombinedLoss and `distill-loss check` ----------------------


@attrs.frozen
class InputPlan:
    """Where each term reads its inputs: its term->key map, and each batch key's readers with their layouts."""

    sources: dict[str, dict[str, str]]
    readers: dict[str, list[Reader]]


def plan_inputs(config: LossConfig, registry: Registry) -> InputPlan:
    """The term->key map of every installed term of ``config`` and the layout each reader expects."""
    sources: dict[str, dict[str, str]] = {}
    readers: dict[str, list[Reader]] = {}
    for name, cfg in config.terms.items():
        try:
            cls = registry.get(config.term_of(name)).cls
        except UnknownTermError:
            continue  # check() reports it
        sources[name] = config.sources(name, tuple(cls.requires))
        layouts = cls.input_layouts(cfg) if isinstance(cfg, cls.config_class) else {}
        for logical, key in sources[name].items():
            if logical in layouts:
                readers.setdefault(key, []).append((name, logical, layouts[logical]))
    return InputPlan(sources, readers)


def _instance_clash(registry: Registry, name: str, term: str) -> Problem:
    return (
        join("terms", name),
        f"{name!r} is the name of the installed term from {registry.get(name).provenance}; "
        f"name this {term!r} instance differently (e.g. '{term}_{name}')",
    )


def _term_problems(config: LossConfig, registry: Registry) -> list[Problem]:
    problems: list[Problem] = []
    for name, cfg in config.terms.items():
        path = join("terms", name)
        bad_name = name_problem(name)
        if bad_name:
            problems.append((path, bad_name))
            continue
        term = config.term_of(name)
        try:
            info = registry.get(term)
        except UnknownTermError as exc:
            problems.append((join(path, "term") if term != name else path, str(exc)))
            continue
        if term != name and name in registry:
            problems.append(_instance_clash(registry, name, term))
        if not isinstance(cfg, info.config_class):
            problems.append((path, f"expected a {info.config_class.__name__}, got {type(cfg).__name__}"))
            continue
        reason = check_weight(cast(Any, cfg).weight)  # an instance of the term's attrs config class
        if reason:
            problems.append((join(path, "weight"), reason))
        requires = tuple(info.cls.requires)
        pit = config.pit_of(name)
        if pit is not None:
            reason = refusal(info.cls, pit)
            if reason:
                problems.append((join(path, "pit"), reason))
            layout = info.cls.input_layouts(cfg).get(requires[0]) if requires else None
            rank = len(layout.split(",")) if layout else None
            if rank is not None and not 0 < pit.axis < rank:
                problems.append(
                    (
                        join(join(path, "pit"), "axis"),
                        f"expected an axis in 1..{rank - 1} of "
                        f"{requires[0]!r} [{layout}] (0 is the batch), got {pit.axis}",
                    )
                )
        for logical in config.inputs_of(name):
            if logical not in requires:
                problems.append(
                    (
                        join(join(path, "inputs"), logical),
                        f"{term!r} has no input {logical!r}{did_you_mean(logical, requires)}; its inputs: "
                        f"{', '.join(requires) or 'none'}",
                    )
                )
        problems += shared_input_problems(
            name, term, config.sources(name, requires), bool(getattr(info.cls, "shared_inputs", False))
        )
        problems += swapped_input_problems(name, term, config.sources(name, requires))
        problems += output_problems(config, name, info.cls)
    return problems


def output_problems(config: LossConfig, name: str, cls: Any) -> list[Problem]:
    """A multi-output entry's ``outputs`` names only the term's outputs, each with a valid weight; ``update``
    only on a term with an update step; ``pit`` only on a term with one output."""
    path, term = join("terms", name), config.term_of(name)
    outputs = tuple(getattr(cls, "outputs", ()) or ())
    binding = config.bindings.get(name)
    problems: list[Problem] = []
    if binding is not None:
        for output in binding.outputs:
            if output not in outputs:
                have = (
                    f"its outputs: {', '.join(outputs)}"
                    if outputs
                    else "it has one output (weigh it with weight = ...)"
                )
                problems.append(
                    (
                        join(join(path, "outputs"), output),
                        f"{term!r} has no output {output!r}{did_you_mean(output, outputs)}; {have}",
                    )
                )
        if binding.update is not None and not is_stateful(cls):
            problems.append(
                (
                    join(path, "update"),
                    f"{term!r} has no update step to schedule (only a term that "
                    "defines update(batch), e.g. one that trains a module it owns)",
                )
            )
        if binding.pit is not None and outputs:
            problems.append(
                (
                    join(path, "pit"),
                    f"{term!r} returns several outputs ({', '.join(outputs)}); pit takes a term with one",
                )
            )
    if outputs and isinstance(config.terms[name], cls.config_class):
        for output, weight in config.output_weights(name, cls).items():
            reason = check_weight(weight)
            if reason:
                problems.append((join(join(path, "outputs"), output), reason))
    return problems


def produced_keys(config: LossConfig, registry: Registry) -> tuple[dict[str, str], list[Problem]]:
    """Every output key the terms of ``config`` write, with what writes it (``<term>_loss``, each output's
    ``<term>_<output>_loss``, ``<term>_pit_identity``, the update step's declared ``<term>_<figure>``), and
    the problems of keys written twice."""
    produced: dict[str, str] = {}
    problems: list[Problem] = []

    def add(key: str, what: str) -> None:
        if key in produced:
            problems.append(
                (
                    "terms",
                    f"output key {key!r} is produced twice: by {produced[key]} and by {what}; rename one of the terms",
                )
            )
        elif key in RESERVED_KEYS and what.startswith(("output", "figure")):
            problems.append(
                ("terms", f"output key {key!r} of {what} is reserved ({', '.join(RESERVED_KEYS)}); rename the term")
            )
        produced.setdefault(key, what)

    for t in config.terms:
        add(f"{t}_loss", f"term {t!r}")
    for t in config.terms:
        try:
            cls: Any = registry.get(config.term_of(t)).cls
        except UnknownTermError:
            cls = None  # check() reports it
        for output in getattr(cls, "outputs", ()) or ():
            add(f"{t}_{output}_loss", f"output {output!r} of term {t!r}")
        if config.pit_of(t):
            add(f"{t}_pit_identity", f"term {t!r} under pit")
        for figure in getattr(cls, "figures", ()) or ():
            add(f"{t}_{figure}", f"figure {figure!r} of the update step of term {t!r}")
    return produced, problems


def _group_problems(config: LossConfig, produced: dict[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    owner: dict[str, str] = {}
    for gname, group in config.groups.items():
        path = join("groups", gname)
        reason = check_weight(group.weight)
        if reason:
            problems.append((join(path, "weight"), reason))
        for member, w in group.members.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 0):
                problems.append(
                    (join(join(path, "members"), member), f"expected a finite weight >= 0, got {_describe(w)}")
                )
            if member not in config.terms:
                problems.append(
                    (
                        path,
                        f"member {member!r} is not a configured term"
                        f"{did_you_mean(member, config.terms)}; terms: "
                        f"{', '.join(config.terms) or 'none'}",
                    )
                )
            elif member in owner:
                problems.append(
                    (
                        path,
                        f"term {member!r} is already in group {owner[member]!r}; a term belongs to at most one group",
                    )
                )
            else:
                owner[member] = gname
    produced = dict(produced)
    for gname, group in config.groups.items():
        key = group.key or f"{gname}_loss"
        where = join(join("groups", gname), "key") if group.key else join("groups", gname)
        if key in RESERVED_KEYS:
            problems.append(
                (
                    where,
                    f"output key {key!r} is reserved ({', '.join(RESERVED_KEYS)} and each term's "
                    "<term>_loss); set another key",
                )
            )
        elif key in produced:
            problems.append(
                (
                    where,
                    f"output key {key!r} is produced twice (also by {produced[key]}); rename the group or set its key",
                )
            )
        produced.setdefault(key, f"group {gname!r}")
    if config.fallback is not None and config.fallback not in config.groups:
        problems.append(
            ("fallback", f"expected a group name ({', '.join(config.groups) or 'no groups'}), got {config.fallback!r}")
        )
    return problems


def check(config: LossConfig, registry: Registry | None = None) -> list[Problem]:
    """Cross-field problems of a whole config: terms, inputs and layouts, groups, output keys, fallback."""
    registry = registry or get_registry()
    plan = plan_inputs(config, registry)
    problems = _term_problems(config, registry) + layout_conflicts(plan.readers, config.batch)
    produced, clashes = produced_keys(config, registry)
    problems += clashes + _group_problems(config, produced)
    read_keys = {key for src in plan.sources.values() for key in src.values()}
    if config.balancer.enabled and config.balancer.input not in read_keys:
        problems.append(
            (
                "balancer.input",
                f"no configured term reads batch key {config.balancer.input!r}; "
                f"the terms read: {', '.join(sorted(read_keys)) or 'nothing'}",
            )
        )
    return problems


def batch_problems(
    config: LossConfig,
    provides: Collection[str],
    carries_gradient: Collection[str],
    registry: Registry | None = None,
    who: str = "training",
) -> list[Problem]:
    """What ``config`` reads that a model's batch will not hold (``provides``: every key its adapter gives;
    ``carries_gradient``: those the model's output carries a gradient to), found before anything runs."""
    registry = registry or get_registry()
    problems: list[Problem] = []
    offered = ", ".join(provides)
    plan = plan_inputs(config, registry)
    for name, sources in plan.sources.items():
        for logical, key in sources.items():
            if key not in provides:
                path = join(join(join("terms", name), "inputs"), logical) if key != logical else join("terms", name)
                problems.append(
                    (
                        path,
                        f"reads batch key {key!r}, which {who} does not provide (it provides "
                        f"{offered}){did_you_mean(key, provides)}",
                    )
                )
    key = config.balancer.input
    if config.balancer.enabled and key not in carries_gradient:
        problems.append(
            (
                "balancer.input",
                f"batch key {key!r} carries no gradient from the model; a balancer "
                f"input must be a model output the balanced terms read (with gradient "
                f"in {who}: {', '.join(carries_gradient) or 'none'})",
            )
        )
    elif config.balancer.enabled:
        for name, sources in plan.sources.items():
            others = sorted({k for k in sources.values() if k != key and k in carries_gradient})
            if key in sources.values() and others:
                problems.append(
                    (
                        "balancer.input",
                        f"balanced term {name!r} also reads {', '.join(map(repr, others))}"
                        f", which carries the model's gradient, but the balancer scales "
                        f"the gradient at {key!r} only (the rest would be dropped); choose "
                        f"an input {name!r} does not read, or its only one with gradient",
                    )
                )
    return problems


def validate(config: LossConfig, registry: Registry | None = None, source: str | None = None) -> None:
    """Everything that must hold before a loss is built from ``config``: ``check`` and the installed
    plugins against its pins. ConfigError lists every problem."""
    problems = check(config, registry) + unmet_pins(config.required_plugins)
    if problems:
        raise ConfigError(problems, source)


# --- structuring a mapping ---------------------------------------------------------------------------------


def _merge(base: Mapping[str, Any], override: Any) -> Any:
    if not isinstance(override, Mapping):
        return override
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for k, v in override.items():
        out[k] = {**out[k], **v} if isinstance(out.get(k), dict) and isinstance(v, Mapping) else v
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
        problems.append(("recipe", f"expected one of {', '.join(map(repr, known))}, got {_describe(name)}"))
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
        sections[table] = _merge(base, raw)

    terms: dict[str, Any] = {}
    bindings: dict[str, TermBinding] = {}
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


converter.register_structure_hook(LossConfig, lambda data, _: _structure(data, None, None))
converter.register_unstructure_hook(LossConfig, _unstructure)


def load_config(source: str | os.PathLike | Mapping[str, Any], registry: Registry | None = None) -> LossConfig:
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
