"""A loss with its own trained state under torch.distributed: the ranks start from rank 0's state, and what a
stateful term trains (a discriminator) sees the global batch's gradient, so the ranks never drift apart.

DistributedDataParallel does this for the model; a loss's parameters are outside it. ``prepare_loss`` is
called by ``train`` when a process group is initialised; a loop of one's own calls it once after building
the loss (and after restoring a checkpoint, if any).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["broadcast_loss_state", "average_loss_gradients", "prepare_loss", "distributed"]

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


def prepare_loss(loss: Any, src: int = 0) -> None:
    """Under torch.distributed, once per loss: broadcast its state from rank ``src`` and average its
    parameters' gradients over the ranks. A loss without parameters or buffers, or one process, needs nothing."""
    if not distributed() or not isinstance(loss, nn.Module):
        return
    broadcast_loss_state(loss, src)
    if not getattr(loss, _PREPARED, False):
        average_loss_gradients(loss)
        object.__setattr__(loss, _PREPARED, True)
