"""Rational resampling as Octave's ``resample`` does it (the filter pystoi uses), as one strided conv1d.

The anti-aliasing filter is Octave's design: an ideal low-pass at the lower of the two Nyquist frequencies,
apodised by a Kaiser window for 60 dB of rejection over a transition band a tenth of that cutoff. The signal
is upsampled by ``up``, filtered and downsampled by ``down`` with the filter's delay removed, which is what
``scipy.signal.resample_poly(x, up, down, window=h / h.sum())`` computes. Here every output phase is one
output channel of a single strided convolution, so no upsampled signal is built, and autograd
differentiates it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F
from torch.nn.grad import conv1d_input

REJECTION_DB = 60.0  # Octave: log10 rejection of -3
GROUP_OUTPUTS = 40  # outputs per row of WideResample's products (fastest at 8 to 48 kHz, measured on a CPU)


def reduced(source_rate: int, target_rate: int) -> tuple[int, int]:
    """(up, down): the rate change target / source in lowest terms."""
    common = math.gcd(source_rate, target_rate)
    return target_rate // common, source_rate // common


def half_length(up: int, down: int) -> int:
    """Taps on each side of the centre of Octave's filter: Kaiser's length formula for a transition band of a
    tenth of the cutoff."""
    return math.ceil((REJECTION_DB - 8) / (28.714 * (1.0 / (2 * max(up, down)) / 10)))


def octave_lowpass(up: int, down: int) -> np.ndarray:
    """Octave's anti-aliasing filter for a rate change of up / down (in lowest terms), scaled to unit sum."""
    cutoff = 1.0 / (2 * max(up, down))  # in cycles per upsampled sample
    half = half_length(up, down)
    beta = 0.1102 * (REJECTION_DB - 8.7)  # Kaiser's beta for rejections above 50 dB
    taps = np.kaiser(2 * half + 1, beta) * 2 * up * cutoff * np.sinc(2 * cutoff * np.arange(-half, half + 1))
    return taps / taps.sum()


def kernel_length(up: int, down: int) -> int:
    """Length of each phase's correlation kernel (see phase_kernels)."""
    return down + 2 * (half_length(up, down) // up) + 2


def resampling_taps(source_rate: int, target_rate: int) -> int:
    """How many numbers OctaveResample holds for this rate change (its filter bank), 0 for none."""
    up, down = reduced(source_rate, target_rate)
    return 0 if up == down else up * kernel_length(up, down)


def phase_kernels(up: int, down: int) -> tuple[np.ndarray, int]:
    """One correlation kernel per output phase, [up, kernel_length], and the left padding they assume.

    Output ``m0 + up * t`` (``m0 < up``) is the upsampled and filtered signal at ``n = (m0 + up * t) * down``,
    which reads input ``i`` through tap ``n - up * i`` of the centred filter ``g``. Writing
    ``m0 * down = a0 * up + r0`` turns it into a correlation of the input, strided by ``down`` and offset by
    ``a0``, with the taps ``g[j * up + r0]``, where ``j = a0 + pad - k`` at kernel position ``k``.
    """
    g = octave_lowpass(up, down) * up
    half = (len(g) - 1) // 2
    pad = half // up + 1
    a0, r0 = np.divmod(np.arange(up)[:, None] * down, up)
    tap = (a0 + pad - np.arange(kernel_length(up, down))[None]) * up + r0
    inside = np.abs(tap) <= half
    return np.where(inside, g[np.clip(tap + half, 0, 2 * half)], 0.0), pad


def polyphase_weights(kernels: np.ndarray, down: int) -> np.ndarray:
    """The phase kernels [up, K] as [Q, J * down, J * up] blocks for WideResample's matrix products.

    With the padded input cut into blocks of J * down samples, the J * up outputs of step t (J steps of every
    phase) are ``sum_q blocks[t + q] @ W[q]``: ``W[q, i, j * up + m] = kernels[m, q * J * down + i - j * down]``
    (0 outside the kernel). J groups steps so that the products are not too thin to be fast (about
    GROUP_OUTPUTS outputs each); no copy of the input is made.
    """
    up, k = kernels.shape
    group = max(1, GROUP_OUTPUTS // up)
    q = -(-(k + (group - 1) * down) // (group * down))
    w = np.zeros((q * group * down, group, up))
    for j in range(group):
        w[j * down : j * down + k, j] = kernels.T
    return w.reshape(q, group * down, group * up)


def _sizes(n: int, up: int, down: int, pad: int, width: int) -> tuple[int, int, int]:
    """(outputs, outputs per phase, right padding) for ``n`` inputs and phase kernels ``width`` long."""
    n_out = -(-n * up // down)
    steps = -(-n_out // up)
    return n_out, steps, max(0, (steps - 1) * down + width - n - pad)


class WideResample(torch.autograd.Function):
    """Resampling of rows [R, N] computed in a wider dtype than theirs, its gradient in theirs.

    The value is the polyphase sum in ``dtype`` (float64: its rounding stays far below the input's own), as
    matrix products (a float64 convolution has no fast kernel on the CPU); the gradient is the transposed
    convolution in the input's dtype, as fast as the plain resampler's backward.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        kernels: torch.Tensor,
        weights: torch.Tensor,
        pad: int,
        down: int,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        up = kernels.shape[0]
        q, block = weights.shape[0], weights.shape[1]  # block: J * down input samples
        n = x.shape[-1]
        n_out, steps, _ = _sizes(n, up, down, pad, kernels.shape[-1])
        groups = -(-steps * down // block)  # output groups of weights.shape[2] samples
        length = (groups + q - 1) * block
        rows = F.pad(x.to(dtype), (pad, max(0, length - n - pad)))[:, :length]
        blocks = rows.view(x.shape[0], groups + q - 1, block)
        w = weights.to(dtype)
        out = blocks[:, :groups] @ w[0]  # [R, groups, J * up]
        for i in range(1, q):
            out += blocks[:, i : i + groups] @ w[i]
        ctx.save_for_backward(kernels)
        ctx.meta = (n, pad, down, x.dtype)
        return out.reshape(x.shape[0], -1)[:, :n_out]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (kernels,) = ctx.saved_tensors
        n, pad, down, dtype = ctx.meta
        up, width = kernels.shape[0], kernels.shape[-1]
        n_out, steps, right = _sizes(n, up, down, pad, width)
        g = F.pad(grad.to(dtype), (0, steps * up - n_out)).view(-1, steps, up).transpose(1, 2)
        padded = n + pad + right
        g = F.pad(g, (0, (padded - width) // down + 1 - steps))  # the convolution's full output length
        dx = conv1d_input((g.shape[0], 1, padded), kernels.to(g.dtype), g, stride=down)
        return dx[:, 0, pad : pad + n], None, None, None, None, None


class OctaveResample(torch.nn.Module):
    """Resample the last dimension from ``source_rate`` to ``target_rate``; ceil(N * target / source) out."""

    kernels: torch.Tensor
    weights: torch.Tensor

    def __init__(self, source_rate: int, target_rate: int) -> None:
        super().__init__()
        self.up, self.down = reduced(source_rate, target_rate)
        kernels, self.pad = phase_kernels(self.up, self.down) if self.up != self.down else (np.zeros((1, 1)), 0)
        self._taps = {"kernels": kernels[:, None], "weights": polyphase_weights(kernels, self.down)}
        for name, taps in self._taps.items():
            self.register_buffer(name, torch.from_numpy(taps), persistent=False)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> OctaveResample:
        """As nn.Module's (``.to``, ``.float()``, ``.half()``), but the taps stay float64 where the device has
        it: rounding the taps of each phase differently makes the filter vary with time, and it mirrors a
        signal's band into the bands above it (a low-passed signal's empty bands then hold its images)."""
        super()._apply(fn, recurse)
        device = self.kernels.device
        if self.kernels.dtype != torch.float64 and device.type != "mps":  # MPS has no float64
            for name, taps in self._taps.items():
                setattr(self, name, torch.from_numpy(taps).to(device))
        return self

    def output_length(self, n: int) -> int:
        """The number of output samples for ``n`` input samples (scipy's resample_poly's)."""
        return -(-n * self.up // self.down)

    def forward(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """x resampled, in ``dtype`` (default x's); a wider one is computed in it, its gradient in x's dtype."""
        dtype = dtype or x.dtype
        if self.up == self.down:
            return x.to(dtype)
        n = x.shape[-1]
        if dtype != x.dtype and torch.promote_types(dtype, x.dtype) == dtype:
            flat = x.reshape(-1, n)
            wide = WideResample.apply(flat, self.kernels.to(x.dtype), self.weights, self.pad, self.down, dtype)
            return wide.reshape(*x.shape[:-1], wide.shape[-1])
        n_out, steps, right = _sizes(n, self.up, self.down, self.pad, self.kernels.shape[-1])
        rows = F.pad(x.reshape(-1, 1, n).to(dtype), (self.pad, right))
        phases = F.conv1d(rows, self.kernels.to(dtype), stride=self.down)[..., :steps]  # [rows, up, steps]
        return phases.transpose(1, 2).reshape(*x.shape[:-1], steps * self.up)[..., :n_out]
