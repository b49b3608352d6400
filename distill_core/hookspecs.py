"""The hooks a distill plugin implements: pluggy project name ``distill``."""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "distill"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def distill_loss_terms(register: Callable[[type], None]) -> None:
    """Register loss-term classes by calling ``register(TermClass)`` once for each.

    Called once per plugin when a registry is built, never per training step.
    """
