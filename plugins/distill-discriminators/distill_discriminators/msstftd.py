"""EnCodec's multi-scale STFT discriminator (MS-STFTD; Défossez et al. 2022, §3.4): a window-normalised complex
STFT per scale, real and imaginary parts as channels, dilated 2-D convs along time, strided along frequency."""

from __future__ import annotations

import attrs
import torch
from torch import nn

from .base import (
    CommonOptions,
    Discriminator,
    SubOutput,
    check_positive,
    check_width,
    conv_stack,
    raise_problems,
    scaled,
)
from .convs import Norm, conv2d


@attrs.define
class MSSTFTDConfig(CommonOptions):
    """One sub-discriminator per (n_fft, hop, window) scale; audiocraft's options under its names.

    Channels: ``filters * filters_scale ** i`` capped at ``max_filters``, times ``width`` (1 in audiocraft).
    The first conv has no weight reparametrisation (as audiocraft builds it); ``norm`` applies to the others.
    The STFT is uncentred, Hann-windowed and, with ``normalized``, divided by the window's L2 norm
    (torchaudio's ``Spectrogram``).
    """

    filters: int = 32
    n_ffts: tuple[int, ...] = (1024, 2048, 512, 256, 128)
    hop_lengths: tuple[int, ...] = (256, 512, 128, 64, 32)
    win_lengths: tuple[int, ...] = (1024, 2048, 512, 256, 128)
    kernel_size: tuple[int, int] = (3, 9)
    stride: tuple[int, int] = (1, 2)
    dilations: tuple[int, ...] = (1, 2, 4)
    filters_scale: int = 1
    max_filters: int = 1024
    negative_slope: float = 0.3
    normalized: bool = True
    norm: Norm = "weight"
    width: float = 1.0

    def __attrs_post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        for name in ("filters", "filters_scale", "max_filters"):
            check_positive(problems, name, getattr(self, name))
        for name in ("n_ffts", "hop_lengths", "win_lengths", "kernel_size", "stride", "dilations"):
            check_positive(problems, name, getattr(self, name))
        lengths = {k: len(getattr(self, k)) for k in ("n_ffts", "hop_lengths", "win_lengths")}
        if len(set(lengths.values())) > 1:
            problems.append(
                (
                    "hop_lengths",
                    "expected one entry per scale: " + ", ".join(f"{k} has {n}" for k, n in lengths.items()),
                )
            )
        for i, (n_fft, win) in enumerate(zip(self.n_ffts, self.win_lengths)):
            if win > n_fft:
                problems.append((f"win_lengths[{i}]", f"expected at most n_ffts[{i}]={n_fft}, got {win}"))
        check_width(problems, self.width)
        raise_problems(problems)


def same_padding(kernel: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """Padding that keeps a stride-1 conv's size, per axis."""
    return ((kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2)


class STFTDiscriminator(nn.Module):
    """One scale: complex STFT as [B, 2, frames, bins], a plain conv, dilated strided convs, two 3x3 convs."""

    window: torch.Tensor

    def __init__(self, n_fft: int, hop: int, win: int, config: MSSTFTDConfig) -> None:
        super().__init__()
        self.config, self.n_fft, self.hop = config, n_fft, hop
        self.register_buffer("window", torch.hann_window(win), persistent=False)
        k = config.kernel_size

        def channels(i: int) -> int:
            return scaled(min(config.filters_scale**i * config.filters, config.max_filters), config.width)

        convs = [conv2d(2, channels(0), k, padding=same_padding(k), norm="none")]
        cin = channels(1)
        for i, d in enumerate(config.dilations):
            cout = channels(i + 1)
            convs.append(
                conv2d(
                    cin,
                    cout,
                    k,
                    stride=config.stride,
                    dilation=(d, 1),
                    padding=same_padding(k, (d, 1)),
                    norm=config.norm,
                )
            )
            cin = cout
        cout = channels(len(config.dilations) + 1)
        square = (k[0], k[0])
        convs.append(conv2d(cin, cout, square, padding=same_padding(square), norm=config.norm))
        self.convs = nn.ModuleList(convs)
        self.conv_post = conv2d(cout, 1, square, padding=same_padding(square), norm=config.norm)

    def forward(self, x: torch.Tensor) -> SubOutput:
        window = self.window.to(x.dtype)
        spec = torch.stft(x[:, 0], self.n_fft, self.hop, window.shape[0], window, center=False, return_complex=True)
        if self.config.normalized:
            spec = spec / window.pow(2).sum().sqrt()
        z = torch.view_as_real(spec).permute(0, 3, 2, 1)
        return conv_stack(self.convs, self.conv_post, z, self.config.negative_slope, self.config)


class MSSTFTD(Discriminator):
    """Multi-scale STFT discriminator: one STFTDiscriminator per scale."""

    name = "msstftd"
    config_class = MSSTFTDConfig

    def __init__(self, config: MSSTFTDConfig) -> None:
        super().__init__(config)
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(n, h, w, config) for n, h, w in zip(config.n_ffts, config.hop_lengths, config.win_lengths)
        )

    def judge(self, x: torch.Tensor) -> list[SubOutput]:
        return [d(x) for d in self.discriminators]
