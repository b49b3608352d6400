"""The adjoints of framing a signal for a short-time transform, shared by the terms that compute those
gradients in closed form (the spectral and mel plugins): overlap-add of windowed frames, and the adjoint of
reflect padding."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def overlap_add_into(out: torch.Tensor, frames: torch.Tensor, window: torch.Tensor, hop: int) -> None:
    """``out[:, t * hop : t * hop + w] += window * frames[:, t]`` for every frame t of [R, T, w] frames.

    ``out`` is [R, L] with L >= (T - 1) * hop + w, and may be a view (a slice of a longer padded signal).
    When hop divides w, each of the w / hop pieces of every frame is one fused multiply-add.
    """
    rows, count, width = frames.shape
    window = window.to(frames.dtype)
    if width % hop:
        length = (count - 1) * hop + width
        out[:, :length] += F.fold(
            (frames * window).transpose(1, 2), output_size=(1, length), kernel_size=(1, width), stride=(1, hop)
        ).view(rows, -1)
        return
    blocks = frames.view(rows, count, width // hop, hop)
    for j, piece in enumerate(window.view(-1, hop)):  # piece j of frame t lands at (t + j) * hop
        out[:, j * hop : (j + count) * hop].view(rows, count, hop).addcmul_(blocks[:, :, j], piece)


def reflect_pad_adjoint(padded: torch.Tensor, pad: int, length: int) -> torch.Tensor:
    """The gradient w.r.t. x of ``F.pad(x, (pad, pad), "reflect")`` for [R, length] x, given the gradient w.r.t.
    the padded signal, [R, length + 2 pad]."""
    grad = padded[:, pad : pad + length].clone()
    if pad:
        grad[:, 1 : pad + 1] += padded[:, :pad].flip(-1)
        grad[:, length - 1 - pad : length - 1] += padded[:, pad + length : length + 2 * pad].flip(-1)
    return grad
