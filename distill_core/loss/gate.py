"""A gradient gate: identity forward; backward passes the gradient only where a flag decided later is true.

The non-finite fallback needs it. When the total is not finite, only the fallback group may send gradient,
but the flag is known only after every term ran, and a zero upstream gradient is not enough: inside a
term's backward, 0 x inf is NaN. Gating each non-fallback term's inputs stops that NaN where it enters the
model's graph, on the device, without a host sync.
"""

from __future__ import annotations

from typing import Any

import torch


class FlagSlot:
    """Holds the device-side flag for one forward pass; set once, after the terms ran."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open: torch.Tensor | None = None


class _Gate(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slot: FlagSlot) -> torch.Tensor:
        ctx.slot = slot
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        flag = ctx.slot.open
        if flag is None:  # never set: the forward pass did not finish its total
            return grad, None
        return torch.where(flag, grad, grad.new_zeros(())), None


def gate(x: Any, slot: FlagSlot) -> Any:
    """``x`` unchanged, but its gradient is zeroed (NaN included) unless ``slot.open`` ends up true."""
    if isinstance(x, torch.Tensor) and x.requires_grad:
        return _Gate.apply(x, slot)
    return x
