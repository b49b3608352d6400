"""The stateful-term contract, declared once: a term with a step of its own on each training batch (e.g. one that
trains a discriminator it owns), checked here and nowhere else."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from distill_core.terms.base import Batch
from distill_core.terms.declared import is_stateful

__all__ = [
    "SYNC_WAYS",
    "StateSyncError",
    "StatefulTerm",
    "SyncWay",
    "end_epoch_step",
    "is_stateful",
    "state_sync",
    "synced_tensors",
]

SyncWay = Literal["broadcast", "grad_mean", "mean", "sum"]
SYNC_WAYS: tuple[SyncWay, ...] = ("broadcast", "grad_mean", "mean", "sum")


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
      checkpoint, compared by fingerprint on resume.
    - ``state_sync`` (class attribute, optional, on the term or on any module it holds): how each piece of its
      state is kept equal across the ranks of torch.distributed, by the name of a parameter or buffer of that
      module (a dotted path reaches into its submodules). The ways (``SYNC_WAYS``):

      - ``"grad_mean"`` (a parameter; every parameter's default): the gradient the term's own backward
        accumulates is averaged over the ranks before it steps, so each rank steps with the global batch's.
      - ``"broadcast"`` (every buffer's default): taken from rank 0 once, by ``prepare_loss``; the ranks then
        keep it equal by moving it alike (a step counter, spectral norm's power-iteration vectors: anything
        computed from state that is already equal).
      - ``"mean"`` (a floating buffer or parameter): a statistic ``update`` moves from the rank's own batch (an
        EMA): averaged over the ranks after each update step. An EMA of a batch mean then equals one process
        on the whole batch when the ranks' shards are of one size (to float rounding, about 1e-7).
      - ``"sum"`` (a buffer or parameter): what ``update`` adds to it on each rank (a count of examples seen)
        is summed over the ranks after each update step: ``value = before + sum over ranks of the change``.

      ``CombinedLoss.update`` does the ``mean`` and ``sum`` reductions in one all_reduce per update step
      for all the terms that ran (no host sync), once ``prepare_loss`` has been called; a declaration naming
      state the module lacks, or a way that does not fit it, is refused on the first update.
    """

    def update(self, batch: Batch) -> Mapping[str, torch.Tensor] | None: ...


class StateSyncError(ValueError):
    """A term's ``state_sync`` names state its module lacks, or a way that does not fit that state."""


def end_epoch_step(term: Any) -> Callable[[], None] | None:
    """A stateful term's per-epoch step, or None when it declares none."""
    step = getattr(term, "end_epoch", None)
    return step if callable(step) else None


def _declared(term_name: str, prefix: str, module: nn.Module) -> dict[str, SyncWay]:
    """One module's own ``state_sync``, checked against its state, by name in the term."""
    declared = getattr(type(module), "state_sync", None)
    if declared is None:
        return {}
    where = f"term {term_name!r}: {type(module).__name__}.state_sync"
    if not isinstance(declared, Mapping):
        raise StateSyncError(f"{where} is {type(declared).__name__}; expected a mapping of state names to ways")
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    out: dict[str, SyncWay] = {}
    for name, way in declared.items():
        if way not in SYNC_WAYS:
            raise StateSyncError(f"{where}[{name!r}] = {way!r}; expected one of {', '.join(SYNC_WAYS)}")
        tensor = params.get(name, buffers.get(name))
        if tensor is None:
            have = ", ".join(sorted([*params, *buffers])) or "none"
            raise StateSyncError(
                f"{where} names {name!r}, which is not a parameter or buffer of it; its parameters and buffers: {have}"
            )
        if way == "grad_mean" and name not in params:
            raise StateSyncError(f"{where}[{name!r}] = 'grad_mean', but {name!r} is a buffer (it has no gradient)")
        if way == "mean" and not tensor.is_floating_point():
            raise StateSyncError(
                f"{where}[{name!r}] = 'mean', but {name!r} is {tensor.dtype} (a mean needs a floating dtype); "
                "use 'sum' or 'broadcast'"
            )
        out[prefix + name] = way
    return out


def state_sync(term_name: str, term: nn.Module) -> dict[str, SyncWay]:
    """How each parameter and buffer of a stateful term is kept equal across ranks, by its name in the term:
    what the ``state_sync`` of its modules declare, else ``grad_mean`` for a parameter and ``broadcast`` for a
    buffer. Host-side only; raises StateSyncError, in one line, on a declaration that does not fit."""
    ways: dict[str, SyncWay] = {name: "grad_mean" for name, _ in term.named_parameters()}
    ways.update((name, "broadcast") for name, _ in term.named_buffers())
    for prefix, module in term.named_modules():
        ways.update(_declared(term_name, f"{prefix}." if prefix else "", module))
    return ways


def synced_tensors(term_name: str, term: nn.Module) -> tuple[tuple[nn.Module, str, SyncWay], ...]:
    """A stateful term's state reduced after each update step (``mean`` and ``sum``), as (owning module, attribute,
    way), in name order: looked up through the module at each step, so ``.to(device)`` after this is seen."""
    out = []
    for name, way in sorted(state_sync(term_name, term).items()):
        if way in ("mean", "sum"):
            owner, _, attr = name.rpartition(".")
            out.append((term.get_submodule(owner) if owner else term, attr, way))
    return tuple(out)
