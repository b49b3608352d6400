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

import numpy as np
import torch
from torch.nn import functional as F

REJECTION_DB = 60.0  # Octave: log10 rejection of -3


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


class OctaveResample(torch.nn.Module):
    """Resample the last dimension from ``source_rate`` to ``target_rate``; ceil(N * target / source) out."""

    def __init__(self, source_rate: int, target_rate: int) -> None:
        super().__init__()
        self.up, self.down = reduced(source_rate, target_rate)
        kernels, self.pad = phase_kernels(self.up, self.down) if self.up != self.down else (np.zeros((1, 1)), 0)
        self.register_buffer("kernels", torch.from_numpy(kernels)[:, None], persistent=False)

    def output_length(self, n: int) -> int:
        """The number of output samples for ``n`` input samples (scipy's resample_poly's)."""
        return -(-n * self.up // self.down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up == self.down:
            return x
        n = x.shape[-1]
        n_out = self.output_length(n)
        steps = -(-n_out // self.up)  # outputs per phase
        right = max(0, (steps - 1) * self.down + self.kernels.shape[-1] - n - self.pad)
        rows = F.pad(x.reshape(-1, 1, n), (self.pad, right))
        phases = F.conv1d(rows, self.kernels.to(x.dtype), stride=self.down)[..., :steps]  # [rows, up, steps]
        return phases.transpose(1, 2).reshape(*x.shape[:-1], steps * self.up)[..., :n_out]
