"""The stateful-term contract, declared once: a term with a step of its own on each training batch (e.g. one that
trains a discriminator it owns), checked here and nowhere else."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from distill_core.terms.base import Batch
from distill_core.terms.declared import is_stateful

__all__ = ["StatefulTerm", "end_epoch_step", "is_stateful"]


@runtime_checkable
class StatefulTerm(Protocol):
    """What a loss term implements to carry state of its own.

    - ``update(batch)``: one step on the batch's inputs (detached by the loss), once per training batch
      before the generator's loss, on the entry's ``update = {...}`` schedule; returns its figures as 0-dim
      tensors (logged as ``<term>_<figure>``, never part of ``total_loss``), or nothing.
    - ``figures`` (class attribute, optional): the figure names ``update`` returns, so that a config's output
      keys are checked before anything runs.
    - ``end_epoch()`` (optional): a per-epoch step (e.g. a scheduler it owns), after a completed epoch.
    - its state is its ``state_dict()`` (modules, buffers and ``get_extra_state``): saved in every
      checkpoint, compared by fingerprint on resume, broadcast from rank 0 under DDP, with the gradients of
      its parameters averaged over the ranks (``distill_core.training.ddp.prepare_loss``).
    """

    def update(self, batch: Batch) -> Mapping[str, torch.Tensor] | None: ...


def end_epoch_step(term: Any) -> Callable[[], None] | None:
    """A stateful term's per-epoch step, or None when it declares none."""
    step = getattr(term, "end_epoch", None)
    return step if callable(step) else None
