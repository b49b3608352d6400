"""What a config reads that a model's batch will not hold, found before anything runs (``check --model``,
``train``): keys the adapter does not give, and a balancer input that carries no gradient."""

from __future__ import annotations

from collections.abc import Collection

from distill_core.config.converter import Problem, did_you_mean, join
from distill_core.loss.model import LossConfig
from distill_core.loss.plan import draft_plan
from distill_core.registry.discovery import Registry, get_registry


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
    plan = draft_plan(config, registry)
    for name, sources in ((t.name, t.sources) for t in plan.terms.values()):
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
        for name, sources in ((t.name, t.sources) for t in plan.terms.values()):
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
