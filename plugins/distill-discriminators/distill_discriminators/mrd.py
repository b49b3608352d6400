"""DAC's multi-band complex-STFT discriminator (MRD; Kumar et al. 2023, §3.3): the real and imaginary STFT parts
as two channels, split into frequency bands, each band through its own conv stack, joined for a last conv."""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from .base import (
    MAX_SAMPLES,
    CommonOptions,
    Discriminator,
    SubOutput,
    check_positive,
    check_width,
    conv_parameters,
    keep_features,
    raise_problems,
    scaled,
)
from .convs import conv2d

BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
MAX_BANDS = 64


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
        check_positive(problems, "fft_sizes", self.fft_sizes, high=MAX_SAMPLES)
        check_width(problems, self.width)
        if not 0 < self.hop_factor <= 1:
            problems.append(("hop_factor", f"expected a fraction of the window in (0, 1], got {self.hop_factor}"))
        elif self.padding == "dac" and self.hop_factor != 0.25:
            problems.append(
                ("hop_factor", f"padding 'dac' (match_stride) needs hop_factor 0.25, got {self.hop_factor}")
            )
        elif not problems:
            for j, fft in enumerate(self.fft_sizes):
                if int(fft * self.hop_factor) < 1:
                    problems.append(
                        (
                            f"fft_sizes[{j}]",
                            f"{fft} x hop_factor {self.hop_factor} gives a hop of 0 samples; expected a hop of "
                            f"at least 1 (fft_sizes[{j}] >= {math.ceil(1 / self.hop_factor)})",
                        )
                    )
        if not self.bands:
            problems.append(("bands", "expected at least one (low, high) band"))
        elif len(self.bands) > MAX_BANDS:
            problems.append(("bands", f"expected at most {MAX_BANDS} bands, got {len(self.bands)}"))
        for i, (lo, hi) in enumerate(self.bands):
            if not 0.0 <= lo < hi <= 1.0:
                problems.append((f"bands[{i}]", f"expected 0 <= low < high <= 1, got ({lo}, {hi})"))
        if not problems:
            for j, fft in enumerate(self.fft_sizes):
                for i, (lo, hi) in enumerate(band_bins(self.bands, fft)):
                    if hi <= lo:
                        problems.append((f"bands[{i}]", f"is empty at fft_sizes[{j}]={fft} (bins {lo}:{hi})"))
        raise_problems(problems)

    def parameter_count(self) -> int:
        """The parameters an MRD of this config holds (what ``check`` bounds before anything is built)."""
        ch = scaled(32, self.width)
        stack = conv_parameters(2, ch, 27) + 3 * conv_parameters(ch, ch, 27) + conv_parameters(ch, ch, 9)
        return len(self.fft_sizes) * (len(self.bands) * stack + conv_parameters(ch, 1, 9))


def band_bins(bands: tuple[tuple[float, float], ...], fft_size: int) -> list[tuple[int, int]]:
    """Each band's bin range for one FFT size, truncated as DAC truncates."""
    bins = fft_size // 2 + 1
    return [(int(lo * bins), int(hi * bins)) for lo, hi in bands]


def shortest(fft_size: int, hop: int, padding: str) -> int:
    """The fewest samples that one FFT size frames (and every longer signal too): torch.stft's centre padding
    reflects ``fft_size // 2`` samples; DAC's framing first reflects ``(fft - hop) // 2`` on the left and that
    plus the signal's shortfall to whole hops on the right, each less than the signal's length."""
    if padding != "dac":
        return fft_size // 2 + 1
    side = (fft_size - hop) // 2
    for n in range(side + hop, 0, -1):  # every n >= side + hop fits; the first that does not, from there down
        if side + (-n) % hop >= n:
            return n + 1
    return 1


class BandDiscriminator(nn.Module):
    """One FFT size: complex STFT, per-band conv stacks (stride 2 along frequency), a joint last conv."""

    def __init__(self, fft_size: int, config: MRDConfig) -> None:
        super().__init__()
        self.config, self.fft_size = config, fft_size
        self.hop = int(fft_size * config.hop_factor)
        self.bins = band_bins(config.bands, fft_size)
        self.min_samples = shortest(fft_size, self.hop, config.padding)
        ch = scaled(32, config.width)
        self.windows: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}  # see window()

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

    def window(self, x: torch.Tensor) -> torch.Tensor:
        """The Hann window in ``x``'s dtype and on its device, rounded from float64 (as DAC's scipy window is):
        exact in float64, where a float32 buffer cast up (torch's float32 hann, which Vocos's Spectrogram
        holds) is off by up to 2e-7, enough to move float64 gradients by 1e-5. Made once per device and dtype;
        not a buffer, so ``.double()`` cannot cast a rounded one up."""
        key = (x.device, x.dtype)
        window = self.windows.get(key)
        if window is None:
            window = torch.hann_window(self.fft_size, dtype=torch.float64, device=x.device).to(x.dtype)
            self.windows[key] = window
        return window

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, N] -> real and imaginary parts as channels, [B, 2, frames, bins]."""
        x = x[:, 0]
        if self.config.padding == "dac":
            n, hop = x.shape[-1], self.hop
            side = (self.fft_size - hop) // 2
            x = F.pad(x[:, None], (side, side + (-n) % hop), mode="reflect")[:, 0]
        spec = torch.stft(x, self.fft_size, self.hop, window=self.window(x), center=True, return_complex=True)
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

    def min_samples(self) -> tuple[int, str]:
        """The largest FFT size's reflect padding needs more samples than it pads."""
        subs = [d for d in self.discriminators if isinstance(d, BandDiscriminator)]
        i = max(range(len(subs)), key=lambda j: subs[j].min_samples)
        d = subs[i]
        return d.min_samples, f"fft_sizes[{i}]={d.fft_size} reflect-pads with padding {self.config.padding!r}"
