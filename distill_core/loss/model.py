"""LossConfig: terms by registered name, weighted groups and plugin pins, in one generic structure.

``LossConfig()`` is the default recipe (``recipes.DEFAULT``); a file may add, change or replace terms by
name, or start from another recipe (``recipe = "none"``: nothing but what the file lists).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from distill_core.config.errors import _describe, not_ascii
from distill_core.config.groups import GroupConfig
from distill_core.config.schedules import UpdateSchedule, Weight
from distill_core.loss.balancer import BalancerConfig
from distill_core.registry import recipes
from distill_core.terms.declared import declared_outputs
from distill_core.terms.pit import PITConfig

TOP_LEVEL_KEYS = ("recipe", "terms", "groups", "fallback", "required_plugins", "batch", "balancer")
# keys of a term's section that the core reads, not the term's config
BINDING_KEYS = ("term", "inputs", "pit", "outputs", "update")
# Keys of CombinedLoss's output that a group's ``key`` (or a term's ``<name>_loss``) may not take.
RESERVED_KEYS = ("total_loss", "nonfinite")
NAME_RULE = "a term's name is a Python identifier (letters, digits, '_'; not empty, no '.', not starting with a digit)"


# Entry names whose output key ``<name>_loss`` is reserved.
_RESERVED_NAMES = frozenset(k.removesuffix("_loss") for k in RESERVED_KEYS if k.endswith("_loss"))


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a term entry (it becomes a module name and an output key ``<name>_loss``), or None.
    Called for every entry of a config (100,000 in a broken one): a valid name costs two checks."""
    if not isinstance(name, str) or not name.isidentifier():
        return f"bad term name {_describe(name)}: {NAME_RULE}{not_ascii(name)}"
    if name in _RESERVED_NAMES:
        return (
            f"term name {name!r} would write output key '{name}_loss', which is reserved ("
            f'{", ".join(RESERVED_KEYS)}); name this entry differently and set term = "..." to keep the term'
        )
    return None


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


def _pins(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _recipe_part(part: str) -> Any:
    """A fresh copy of one field of the default recipe, structured (by the loader, which builds LossConfigs:
    imported here, at the first default, not at import)."""
    from distill_core.loss.structure import recipe_default  # the loader sits above this module

    return copy.deepcopy(getattr(recipe_default(), part))


def _raw_recipe() -> recipes.Recipe:
    """The default recipe as its plugin wrote it: its term names are known without structuring a config."""
    return recipes.get(recipes.DEFAULT)


def _recipe_groups(self: LossConfig) -> dict[str, GroupConfig]:
    """The recipe's groups whose members are all among the terms (``LossConfig(terms={})`` has none)."""
    raw = _raw_recipe().groups
    fits = [g for g, section in raw.items() if set(_members(section)) <= set(self.terms)]
    return {g: c for g, c in _recipe_part("groups").items() if g in fits} if fits else {}


def _members(section: Any) -> Iterable[str]:
    members = section.get("members", ()) if isinstance(section, Mapping) else ()
    return members if isinstance(members, (Mapping, list, tuple)) else ()


def _recipe_fallback(self: LossConfig) -> str | None:
    fallback = _raw_recipe().fallback
    return fallback if fallback in self.groups else None


def _recipe_batch(self: LossConfig) -> dict[str, str]:
    """The recipe's batch layouts, when every term of the recipe is there to read them."""
    return _recipe_part("batch") if set(_raw_recipe().terms) <= set(self.terms) else {}


@attrs.define(kw_only=True)
class LossConfig:
    """Every loss term's config by registered name, the groups they sum into, and plugin pins.

    Fields left out take the default recipe's where they fit the terms (``LossConfig()`` is that recipe):
    given ``terms``, a recipe group comes along only if all its members are among them, its fallback only
    with its group, and the batch layouts only with every recipe term. ``LossConfig.of(terms)`` holds
    exactly what it is given. ``fallback`` names the group whose sum replaces a non-finite total;
    ``batch`` declares the batch keys' layouts (``{"recon": "B, C, N"}``).
    """

    terms: dict[str, Any] = attrs.Factory(lambda: _recipe_part("terms"))
    groups: dict[str, GroupConfig] = attrs.Factory(_recipe_groups, takes_self=True)
    fallback: str | None = attrs.Factory(_recipe_fallback, takes_self=True)
    required_plugins: tuple[str, ...] = attrs.field(default=(), converter=_pins)
    bindings: dict[str, TermBinding] = attrs.Factory(dict)
    batch: dict[str, str] = attrs.Factory(_recipe_batch, takes_self=True)
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
        outputs = declared_outputs(cls)
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
    def __distill_structure__(cls, data: Any) -> LossConfig:
        """How the converter structures a LossConfig: as ``load_config`` does (the loader sits above this
        module, so it is imported at the call)."""
        from distill_core.loss.structure import structure_config  # the loader sits above this module

        return structure_config(data)

    def __distill_unstructure__(self) -> dict[str, Any]:
        """How the converter unstructures a LossConfig: the table ``dump_config`` writes."""
        from distill_core.loss.structure import unstructure_config  # the loader sits above this module

        return unstructure_config(self)

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
