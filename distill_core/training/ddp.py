"""A loss with its own trained state under torch.distributed: the ranks start from rank 0's state, what a
stateful term trains (a discriminator) sees the global batch's gradient, and a statistic it moves from its own
batch (an EMA) is reduced over the ranks after each update step, so the ranks never drift apart.

DistributedDataParallel does this for the model; a loss's parameters are outside it. ``prepare_loss`` is
called by ``train`` when a process group is initialised; a loop of one's own (or a LightningModule's
``on_fit_start``) calls it once after building the loss (and after restoring a checkpoint, if any). A
CombinedLoss with stateful terms refuses to update under several ranks until it has been called. How each
piece of a term's state is kept equal is the term's own declaration (``state_sync``:
distill_core.terms.stateful).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from distill_core.terms.stateful import SyncWay, synced_tensors

__all__ = ["RankSync", "average_loss_gradients", "broadcast_loss_state", "distributed", "prepare_loss"]

_PREPARED = "_distill_ddp_prepared"  # set on a loss whose gradient hooks are registered


def distributed() -> bool:
    """Whether a process group is initialised (more than one rank may be training)."""
    return dist.is_available() and dist.is_initialized()


def broadcast_loss_state(loss: nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``loss`` from rank ``src`` to the others, in place (no-op alone).

    Optimizer state of a stateful term is not broadcast: at the start it is empty, and after a restore every
    rank read the same checkpoint.
    """
    if not distributed():
        return
    with torch.no_grad():
        for tensor in [*loss.parameters(), *loss.buffers()]:
            dist.broadcast(tensor.data, src)


def average_loss_gradients(loss: nn.Module) -> list[Any]:
    """Average each loss parameter's gradient over the ranks as soon as backward has accumulated it.

    The hooks fire inside a stateful term's own backward (its update step), before it clips and steps, so
    every rank steps with the global batch's gradient. In the model's backward a term's parameters make no
    gradient (a stateful term keeps them read-only there), so no hook fires and nothing is sent. Returns the
    hook handles (``handle.remove()`` undoes it). Each parameter is reduced on its own: the ranks must run the
    same backward graph, as they do for one architecture. A parameter that does not require grad now (a
    discriminator between its steps) gets the hook too: it fires whenever a backward reaches the parameter.
    """
    if not distributed():
        return []
    world = dist.get_world_size()

    def average(param: torch.Tensor) -> None:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(world)

    handles = []
    for param in loss.parameters():
        wanted = param.requires_grad
        param.requires_grad_(True)  # a term keeps its parameters read-only between its steps; the hook stays on
        handles.append(param.register_post_accumulate_grad_hook(average))
        param.requires_grad_(wanted)
    return handles


class RankSync:
    """The ``mean`` and ``sum`` state of a loss's stateful terms (their ``state_sync``), reduced over the ranks
    after each update step: one all_reduce for every such tensor of the terms that ran (packed, in one dtype:
    the tensors' own when they share it, else float64), and no host sync.

    ``CombinedLoss.update`` calls ``before(names)`` ahead of the terms' steps (it keeps what a ``sum`` tensor
    held) and ``after(names, kept)`` once they all ran."""

    def __init__(self, terms: Mapping[str, nn.Module]) -> None:
        self.world = dist.get_world_size() if distributed() else 1
        self.tensors: dict[str, tuple[tuple[nn.Module, str, SyncWay], ...]] = {
            name: found for name, term in terms.items() if (found := synced_tensors(name, term))
        }

    def before(self, names: tuple[str, ...]) -> list[torch.Tensor] | None:
        """What each ``sum`` tensor of these terms holds before their steps (None: nothing of theirs to reduce)."""
        if self.world == 1 or not any(name in self.tensors for name in names):
            return None
        return [getattr(m, a).detach().clone() for n in names for m, a, w in self.tensors.get(n, ()) if w == "sum"]

    @torch.no_grad()
    def after(self, names: tuple[str, ...], kept: list[torch.Tensor] | None) -> None:
        """Average the ``mean`` tensors and sum the ``sum`` tensors' changes over the ranks, in place."""
        if kept is None:
            return
        entries = [(getattr(m, a), w) for n in names for m, a, w in self.tensors.get(n, ())]
        means = [t for t, w in entries if w == "mean"]
        sums = [t for t, w in entries if w == "sum"]
        parts = [*means, *(t - old for t, old in zip(sums, kept))]
        dtype = parts[0].dtype if all(p.dtype == parts[0].dtype for p in parts) else torch.float64
        packed = torch.cat([p.reshape(-1).to(dtype) for p in parts])
        dist.all_reduce(packed)
        split = list(packed.split([p.numel() for p in parts]))
        for t, reduced in zip(means, split):
            t.copy_((reduced / self.world).view_as(t))
        for t, old, reduced in zip(sums, kept, split[len(means) :]):
            t.copy_(old + reduced.view_as(t).to(t.dtype))


def prepare_loss(loss: Any, src: int = 0) -> None:
    """Under torch.distributed, once per loss: broadcast its state from rank ``src``, average its parameters'
    gradients over the ranks, and (a CombinedLoss) reduce its terms' ``mean`` and ``sum`` state after each
    update step. A loss without parameters or buffers, or one process, needs nothing."""
    if not distributed() or not isinstance(loss, nn.Module):
        return
    attach = getattr(loss, "attach_rank_sync", None)  # a CombinedLoss: its stateful terms' declared state
    combined = cast(Any, loss)
    sync = RankSync({name: combined.terms[name] for name in combined.stateful}) if callable(attach) else None
    broadcast_loss_state(loss, src)
    if not getattr(loss, _PREPARED, False):
        average_loss_gradients(loss)
        object.__setattr__(loss, _PREPARED, True)
    if callable(attach):
        attach(sync)
