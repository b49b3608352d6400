"""DAC's multi-band complex-STFT discriminator (MRD; Kumar et al. 2023, §3.3): the real and imaginary STFT parts
as two channels, split into frequency bands, each band through its own conv stack, joined for a last conv."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from .base import (
    CommonOptions,
    Discriminator,
    SubOutput,
    check_positive,
    check_width,
    keep_features,
    raise_problems,
    scaled,
)
from .convs import conv2d

BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


@attrs.define
class MRDConfig(CommonOptions):
    """One sub-discriminator per FFT size (window = FFT size, Hann, hop ``fft_size * hop_factor``).

    ``bands``: fractions of the ``fft_size // 2 + 1`` bins, each ``(low, high)``. ``padding = "dac"`` frames as
    DAC (audiotools' ``match_stride``: reflect-pad ``(fft - hop) // 2`` each side and the signal up to whole
    hops, centre, drop 2 frames at each end; hop must be fft / 4); ``"center"`` as ``torch.stft(center=True)``
    (Vocos). ``width`` multiplies the 32 channels.
    """

    fft_sizes: tuple[int, ...] = (2048, 1024, 512)
    hop_factor: float = 0.25
    bands: tuple[tuple[float, float], ...] = BANDS
    width: float = 1.0
    negative_slope: float = 0.1
    padding: Literal["dac", "center"] = "dac"

    def __attrs_post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        check_positive(problems, "fft_sizes", self.fft_sizes)
        check_width(problems, self.width)
        if not 0 < self.hop_factor <= 1:
            problems.append(("hop_factor", f"expected a fraction of the window in (0, 1], got {self.hop_factor}"))
        elif self.padding == "dac" and self.hop_factor != 0.25:
            problems.append(
                ("hop_factor", f"padding 'dac' (match_stride) needs hop_factor 0.25, got {self.hop_factor}")
            )
        if not self.bands:
            problems.append(("bands", "expected at least one (low, high) band"))
        for i, (lo, hi) in enumerate(self.bands):
            if not 0.0 <= lo < hi <= 1.0:
                problems.append((f"bands[{i}]", f"expected 0 <= low < high <= 1, got ({lo}, {hi})"))
        if not problems:
            for j, fft in enumerate(self.fft_sizes):
                for i, (lo, hi) in enumerate(band_bins(self.bands, fft)):
                    if hi <= lo:
                        problems.append((f"bands[{i}]", f"is empty at fft_sizes[{j}]={fft} (bins {lo}:{hi})"))
        raise_problems(problems)


def band_bins(bands: tuple[tuple[float, float], ...], fft_size: int) -> list[tuple[int, int]]:
    """Each band's bin range for one FFT size, truncated as DAC truncates."""
    bins = fft_size // 2 + 1
    return [(int(lo * bins), int(hi * bins)) for lo, hi in bands]


class BandDiscriminator(nn.Module):
    """One FFT size: complex STFT, per-band conv stacks (stride 2 along frequency), a joint last conv."""

    window: torch.Tensor

    def __init__(self, fft_size: int, config: MRDConfig) -> None:
        super().__init__()
        self.config, self.fft_size = config, fft_size
        self.hop = int(fft_size * config.hop_factor)
        self.bins = band_bins(config.bands, fft_size)
        ch = scaled(32, config.width)
        self.register_buffer("window", torch.hann_window(fft_size, dtype=torch.float64).float(), persistent=False)

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                [
                    conv2d(2, ch, (3, 9), (1, 1), padding=(1, 4)),
                    *(conv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)) for _ in range(3)),
                    conv2d(ch, ch, (3, 3), (1, 1), padding=(1, 1)),
                ]
            )

        self.band_convs = nn.ModuleList(stack() for _ in self.bins)
        self.conv_post = conv2d(ch, 1, (3, 3), (1, 1), padding=(1, 1))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, N] -> real and imaginary parts as channels, [B, 2, frames, bins]."""
        x = x[:, 0]
        if self.config.padding == "dac":
            n, hop = x.shape[-1], self.hop
            side = (self.fft_size - hop) // 2
            x = F.pad(x[:, None], (side, side + (-n) % hop), mode="reflect")[:, 0]
        spec = torch.stft(x, self.fft_size, self.hop, window=self.window.to(x.dtype), center=True, return_complex=True)
        if self.config.padding == "dac":
            spec = spec[..., 2:-2]
        return torch.view_as_real(spec).permute(0, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> SubOutput:
        spec = self.spectrogram(x)
        features, outputs = [], []
        for (lo, hi), stack in zip(self.bins, self.band_convs):
            band, kept = spec[..., lo:hi], []
            assert isinstance(stack, nn.ModuleList)  # each band's stack is the ModuleList of its convs (__init__)
            for conv in stack:
                band = F.leaky_relu(conv(band), self.config.negative_slope)
                kept.append(band)
            features += keep_features(kept, self.config)
            outputs.append(band)
        return SubOutput(features, self.conv_post(torch.cat(outputs, dim=-1)))


class MRD(Discriminator):
    """Multi-band, multi-resolution complex-STFT discriminator: one BandDiscriminator per FFT size."""

    name = "mrd"
    config_class = MRDConfig

    def __init__(self, config: MRDConfig) -> None:
        super().__init__(config)
        self.discriminators = nn.ModuleList(BandDiscriminator(f, config) for f in config.fft_sizes)

    def judge(self, x: torch.Tensor) -> list[SubOutput]:
        return [d(x) for d in self.discriminators]
