"""A loss config's public face: the data model (``distill_core.loss.model``), loading and dumping
(``.structure``), the one validation (``.checks``) and the plan it yields (``.plan``), importable from here.

``LossConfig()`` is the default recipe (``recipes.DEFAULT``); a file may add, change or replace terms by
name, or start from another recipe (``recipe = "none"``: nothing but what the file lists).
"""

from __future__ import annotations

from distill_core.loss.batch_checks import batch_problems
from distill_core.loss.checks import (
    check,
    checked_plan,
    output_problems,
    produced_keys,
    shared_input_problems,
    swapped_input_problems,
    validate,
)
from distill_core.loss.model import (
    BINDING_KEYS,
    NAME_RULE,
    RESERVED_KEYS,
    TOP_LEVEL_KEYS,
    LossConfig,
    TermBinding,
    name_problem,
)
from distill_core.loss.plan import LossPlan, TermPlan, draft_plan
from distill_core.loss.structure import as_loss_config, default_config, dump_config, dumps_config, load_config

__all__ = [
    "BINDING_KEYS",
    "NAME_RULE",
    "RESERVED_KEYS",
    "TOP_LEVEL_KEYS",
    "LossConfig",
    "LossPlan",
    "TermBinding",
    "TermPlan",
    "as_loss_config",
    "batch_problems",
    "check",
    "checked_plan",
    "default_config",
    "draft_plan",
    "dump_config",
    "dumps_config",
    "load_config",
    "name_problem",
    "output_problems",
    "produced_keys",
    "shared_input_problems",
    "swapped_input_problems",
    "validate",
]
