"""The one validation of a whole config against a registry, shared by load_config, CombinedLoss and
``distill-loss check``: terms, inputs and layouts, groups, output keys, fallback, the balancer, the pins."""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Mapping
from typing import Any, cast

from distill_core.config.converter import ConfigError, Problem, _describe, check_weight, did_you_mean, join
from distill_core.config.errors import SHOWN_PROBLEMS, listed
from distill_core.loss.model import RESERVED_KEYS, LossConfig, name_problem
from distill_core.loss.plan import LossPlan, draft_plan
from distill_core.registry.discovery import Registry, TermInfo, UnknownTermError, get_registry
from distill_core.registry.provenance import unmet_pins
from distill_core.terms.declared import declared_outputs, is_stateful
from distill_core.terms.layouts import conflicts as layout_conflicts
from distill_core.terms.pit import refusal


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


def _instance_clash(registry: Registry, name: str, term: str) -> Problem:
    return (
        join("terms", name),
        f"{name!r} is the name of the installed term from {registry.get(name).provenance}, which "
        f"term = {term!r} would replace; name this {term!r} instance differently (e.g. '{term}_{name}')",
    )


# Unknown terms past this many get a short reason: the registry's diagnosis of one (its distributions, their
# look-alike entry-point groups, close names) costs about a millisecond, and a message shows only the first few.
DIAGNOSED_UNKNOWN = SHOWN_PROBLEMS


def find_term(registry: Registry, term: str, unknown_so_far: int) -> tuple[TermInfo | None, str]:
    """(the registered term, '') or (None, why it cannot be used): in full for the first ``DIAGNOSED_UNKNOWN``
    unknown terms of a config, in a few words after them (so 100,000 unknown names are refused at once)."""
    if unknown_so_far >= DIAGNOSED_UNKNOWN and term not in registry:
        return None, f"unknown term {term!r}"
    try:
        return registry.get(term), ""
    except UnknownTermError as exc:
        return None, str(exc)


def _term_problems(config: LossConfig, registry: Registry) -> list[Problem]:
    problems: list[Problem] = []
    unknown = 0
    for name, cfg in config.terms.items():
        path = join("terms", name)
        bad_name = name_problem(name)
        if bad_name:
            problems.append((path, bad_name))
            continue
        term = config.term_of(name)
        found, why = find_term(registry, term, unknown)
        if found is None:
            unknown += 1
            problems.append((join(path, "term") if term != name else path, why))
            continue
        info = found
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
    outputs = declared_outputs(cls)
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


def produced_keys(plan: LossPlan) -> tuple[dict[str, str], list[Problem]]:
    """Every output key the terms of a plan write, with what writes it (``<term>_loss``, each output's
    ``<term>_<output>_loss``, ``<term>_pit_identity``, the update step's declared ``<term>_<figure>``), and
    the problems of keys written twice."""
    produced: dict[str, str] = {}
    problems: list[Problem] = []
    for key, what in plan.writers():
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
    return produced, problems


def _group_problems(config: LossConfig, produced: dict[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    owner: dict[str, str] = {}
    missing = 0
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
                missing += 1
                hint = did_you_mean(member, config.terms) if missing <= DIAGNOSED_UNKNOWN else ""
                problems.append(
                    (path, f"member {member!r} is not a configured term{hint}; terms: {listed(config.terms)}")
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
            (
                "fallback",
                f"expected a group name ({listed(config.groups) if config.groups else 'no groups'}), "
                f"got {_describe(config.fallback)}",
            )
        )
    return problems


def check(config: LossConfig, registry: Registry | None = None) -> list[Problem]:
    """Cross-field problems of a whole config: terms, inputs and layouts, groups, output keys, fallback."""
    return _plan_problems(config, registry or get_registry())[1]


def _plan_problems(config: LossConfig, registry: Registry) -> tuple[LossPlan, list[Problem]]:
    plan = draft_plan(config, registry)
    problems = _term_problems(config, registry) + layout_conflicts(plan.readers, config.batch)
    produced, clashes = produced_keys(plan)
    problems += clashes + _group_problems(config, produced)
    read_keys = set(plan.read_keys)
    if config.balancer.enabled and config.balancer.input not in read_keys:
        problems.append(
            (
                "balancer.input",
                f"no configured term reads batch key {config.balancer.input!r}; "
                f"the terms read: {listed(sorted(read_keys)) if read_keys else 'nothing'}",
            )
        )
    return plan, problems


class _Checked:
    """The last config checked, with a copy to tell whether it changed since, and its plan."""

    config: weakref.ref[LossConfig] | None = None
    registry: weakref.ref[Registry] | None = None
    snapshot: LossConfig | None = None
    plan: LossPlan | None = None


_LAST = _Checked()


def checked_plan(config: LossConfig, registry: Registry | None = None) -> tuple[LossPlan, list[Problem]]:
    """The plan of ``config`` and its problems, checked once: loading a config checks it, and building a loss
    from that same, unchanged config then reuses the result (the config is compared with a copy taken when
    it was checked)."""
    registry = registry or get_registry()
    last = _LAST
    if (
        last.plan is not None
        and last.config is not None
        and last.config() is config
        and last.registry is not None
        and last.registry() is registry
        and _unchanged(config, last.snapshot)
    ):
        return last.plan, []
    plan, problems = _plan_problems(config, registry)
    if not problems:
        last.config, last.registry, last.plan = weakref.ref(config), weakref.ref(registry), plan
        last.snapshot = copy.deepcopy(config)
    return plan, problems


def _unchanged(config: LossConfig, snapshot: LossConfig | None) -> bool:
    try:
        return bool(snapshot == config)
    except Exception:  # a plugin config whose fields do not compare (e.g. a tensor): check it again
        return False


def validate(config: LossConfig, registry: Registry | None = None, source: str | None = None) -> LossPlan:
    """Everything that must hold before a loss is built from ``config``: ``check`` and the installed
    plugins against its pins. Returns the checked plan; ConfigError lists every problem."""
    plan, problems = checked_plan(config, registry)
    problems = problems + unmet_pins(config.required_plugins)
    if problems:
        raise ConfigError(problems, source)
    return plan
