"""LossPlan: what a config means against a registry, worked out once and frozen.

Who reads which batch key, each term's components and output keys, the groups, the gates, and the one
product that turns host weights into each component's share of the total. ``check`` reads a draft plan (of
a config that may still be wrong); CombinedLoss, the lock and ``distill-loss check`` read the checked one.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from distill_core.config.converter import check_weight
from distill_core.config.schedules import UpdateSchedule, Weight, weight_at
from distill_core.loss.model import RESERVED_KEYS, LossConfig
from distill_core.registry.discovery import Registry, UnknownTermError
from distill_core.registry.entries import Provenance
from distill_core.terms.declared import declared_outputs, is_stateful
from distill_core.terms.layouts import Reader
from distill_core.terms.pit import PITConfig

__all__ = ["LossPlan", "TermPlan", "draft_plan", "figure_key", "output_key", "pit_key"]


def output_key(component: str) -> str:
    """The output key of a term or component: ``<name>_loss``."""
    return f"{component}_loss"


def pit_key(name: str) -> str:
    """The output key of a PIT term's share of identity assignments."""
    return f"{name}_pit_identity"


def figure_key(name: str, figure: str) -> str:
    """The key under which a stateful term's update figure is logged."""
    return f"{name}_{figure}"


@attrs.frozen
class TermPlan:
    """One config entry resolved: its class, where its inputs come from, its components and its group."""

    name: str
    term: str
    cls: type
    provenance: Provenance
    sources: dict[str, str]  # logical input -> batch key
    inputs: dict[str, str]  # the entry's ``inputs`` table as written (empty: it reads its own names)
    layouts: dict[str, str]  # logical input -> the layout it expects (empty for a config of the wrong class)
    outputs: tuple[str, ...]  # a multi-output term's declared outputs; () for one output
    output_weights: dict[str, Weight]
    group: str | None
    member_weight: float
    pit: PITConfig | None
    update: UpdateSchedule
    stateful: bool

    @property
    def components(self) -> tuple[str, ...]:
        """What this entry adds to the total: itself, or ``<name>_<output>`` for each output."""
        return tuple(f"{self.name}_{o}" for o in self.outputs) if self.outputs else (self.name,)

    @property
    def mapped(self) -> bool:
        """Whether some input reads a batch key of another name."""
        return any(logical != key for logical, key in self.sources.items())

    @property
    def keys(self) -> tuple[str, ...]:
        """Its output keys: ``<name>_loss``, then each component's for a multi-output term."""
        extra = tuple(output_key(c) for c in self.components) if self.outputs else ()
        return (output_key(self.name), *extra)


def _term_plan(config: LossConfig, name: str, cls: type, provenance: Provenance) -> TermPlan:
    cfg = config.terms[name]
    sources = config.sources(name, tuple(getattr(cls, "requires", ())))
    own = isinstance(cfg, getattr(cls, "config_class", ()))
    layouts = dict(cls.input_layouts(cfg)) if own and hasattr(cls, "input_layouts") else {}
    group = next(((g, gc.members[name]) for g, gc in config.groups.items() if name in gc.members), None)
    outputs = declared_outputs(cls)
    return TermPlan(
        name=name,
        term=config.term_of(name),
        cls=cls,
        provenance=provenance,
        sources=sources,
        inputs=config.inputs_of(name),
        layouts=layouts,
        outputs=outputs,
        output_weights=config.output_weights(name, cls) if outputs and own else {},
        group=group[0] if group else None,
        member_weight=group[1] if group else 1.0,
        pit=config.pit_of(name),
        update=config.update_of(name),
        stateful=is_stateful(cls),
    )


@attrs.frozen
class LossPlan:
    """A config's meaning against a registry: every question the loss, ``check`` and the lock ask of it."""

    config: LossConfig
    terms: dict[str, TermPlan]  # the installed terms of the config, in config order
    readers: dict[str, list[Reader]]  # batch key -> who reads it, with the layout each expects
    group_keys: dict[str, str]  # group -> its output key

    @property
    def components(self) -> tuple[str, ...]:
        """Everything the total sums, each weighted on its own, in config order."""
        return tuple(c for t in self.terms.values() for c in t.components)

    @property
    def term_of(self) -> dict[str, str]:
        """Each component's config entry."""
        return {c: t.name for t in self.terms.values() for c in t.components}

    @property
    def read_keys(self) -> tuple[str, ...]:
        """Every batch key some term reads, after the input mappings, in order of first reading."""
        return tuple(dict.fromkeys(k for t in self.terms.values() for k in t.sources.values()))

    @property
    def term_keys(self) -> tuple[str, ...]:
        """Each term's output keys in config order."""
        return tuple(k for t in self.terms.values() for k in t.keys)

    @property
    def stateful(self) -> tuple[str, ...]:
        """The entries with an update step of their own, in config order."""
        return tuple(t.name for t in self.terms.values() if t.stateful)

    @property
    def balanced(self) -> frozenset[str]:
        """The entries whose components the balancer weighs: those that read its input (none when it is off)."""
        balancer = self.config.balancer
        if not balancer.enabled:
            return frozenset()
        return frozenset(t.name for t in self.terms.values() if balancer.input in t.sources.values())

    @property
    def gated(self) -> dict[str, str]:
        """Each gated entry and its gate: with a balancer, every unbalanced term on its own value (gate named
        after it); without, the terms outside the fallback group on the total (gate ``""``)."""
        if self.config.balancer.enabled:
            return {name: name for name in self.terms if name not in self.balanced}
        if self.config.fallback is None:
            return {}
        fallback = self.config.groups[self.config.fallback].members
        return {name: "" for name in self.terms if name not in fallback}

    def writers(self) -> list[tuple[str, str]]:
        """Every key the terms write (a forward's and an update's figures), with what writes it, in order: a
        key written twice appears twice (``check`` refuses it)."""
        out = [(output_key(name), f"term {name!r}") for name in self.config.terms]
        for t in self.terms.values():
            out += [(output_key(f"{t.name}_{o}"), f"output {o!r} of term {t.name!r}") for o in t.outputs]
            if t.pit is not None:
                out.append((pit_key(t.name), f"term {t.name!r} under pit"))
            figures = getattr(t.cls, "figures", ()) or ()
            out += [(figure_key(t.name, f), f"figure {f!r} of the update step of term {t.name!r}") for f in figures]
        return out

    def forward_keys(self) -> frozenset[str]:
        """Every key a forward writes: the terms', the components', the groups', PIT's and the total's."""
        keys = {k for t in self.terms.values() for k in t.keys} | set(self.group_keys.values())
        keys |= {pit_key(t.name) for t in self.terms.values() if t.pit is not None}
        return frozenset(keys | set(RESERVED_KEYS))

    def weights(
        self, epoch: int | None = None, total_epochs: int | None = None, overrides: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """Host-side weights at this point of training: each term's own, each group's, and each output's of a
        multi-output term (under ``<name>_<output>``); ``overrides`` replaces some by name."""
        config = self.config
        out = {name: weight_at(cfg.weight, epoch, total_epochs) for name, cfg in config.terms.items()}
        out.update({g: weight_at(group.weight, epoch, total_epochs) for g, group in config.groups.items()})
        for t in self.terms.values():
            out.update({f"{t.name}_{o}": weight_at(w, epoch, total_epochs) for o, w in t.output_weights.items()})
        if overrides:
            unknown = [k for k in overrides if k not in out]
            if unknown:
                raise KeyError(f"weight override for {unknown[0]!r}: no such term or group; have {', '.join(out)}")
            for name, value in overrides.items():
                reason = check_weight(value)
                if reason or isinstance(value, bool):
                    raise ValueError(f"weight override for {name!r}: {reason or 'expected a number, got a bool'}")
                out[name] = float(value)
        return out

    def in_group(self, weights: Mapping[str, float]) -> dict[str, float]:
        """Each component's weight inside its group (or in the total, when ungrouped): the term's weight, times
        the output's for a multi-output term, times the member weight. The one product of weights."""
        out: dict[str, float] = {}
        for t in self.terms.values():
            own = t.member_weight * weights[t.name] if t.group is not None else weights[t.name]
            for c in t.components:
                out[c] = own * weights[c] if t.outputs else own
        return out

    def effective_weights(self, weights: Mapping[str, float]) -> dict[str, float]:
        """Each component's weight in the total: its weight in its group times the group's weight."""
        group_of = {c: t.group for t in self.terms.values() for c in t.components}
        return {c: w * weights[g] if (g := group_of[c]) is not None else w for c, w in self.in_group(weights).items()}

    def with_modules(self, types: Mapping[str, type]) -> LossPlan:
        """The plan with some entries served by ready modules of these types (they may read fewer inputs)."""
        if not types:
            return self
        terms = dict(self.terms)
        for name, cls in types.items():
            if name in terms:
                terms[name] = _term_plan(self.config, name, cls, terms[name].provenance)
        return attrs.evolve(self, terms=terms)


def draft_plan(config: LossConfig, registry: Registry) -> LossPlan:
    """The plan of a config that may still be wrong: entries whose term is not installed are left out (``check``
    names them)."""
    terms: dict[str, TermPlan] = {}
    readers: dict[str, list[Reader]] = {}
    for name in config.terms:
        try:
            info = registry.get(config.term_of(name))
        except UnknownTermError:
            continue
        plan = terms[name] = _term_plan(config, name, info.cls, info.provenance)
        for logical, key in plan.sources.items():
            if logical in plan.layouts:
                readers.setdefault(key, []).append((name, logical, plan.layouts[logical]))
    group_keys = {name: group.key or output_key(name) for name, group in config.groups.items()}
    return LossPlan(config, terms, readers, group_keys)
