"""EnCodec's multi-scale STFT discriminator (MS-STFTD; Défossez et al. 2022, §3.4): a window-normalised complex
STFT per scale, real and imaginary parts as channels, dilated 2-D convs along time, strided along frequency."""

from __future__ import annotations

import attrs
import torch
from torch import nn

from .base import (
    MAX_KERNEL,
    MAX_SAMPLES,
    CommonOptions,
    Discriminator,
    SubOutput,
    check_odd,
    check_positive,
    check_width,
    conv_parameters,
    conv_stack,
    raise_problems,
    scaled,
)
from .convs import Norm, conv2d

MAX_FILTERS = 2**14
MAX_FILTERS_SCALE = 16
MAX_DILATIONS = 16


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
        check_positive(problems, "filters", self.filters, high=MAX_FILTERS)
        check_positive(problems, "max_filters", self.max_filters, high=MAX_FILTERS)
        check_positive(problems, "filters_scale", self.filters_scale, high=MAX_FILTERS_SCALE)
        for name in ("n_ffts", "hop_lengths", "win_lengths"):
            check_positive(problems, name, getattr(self, name), high=MAX_SAMPLES)
        for name in ("kernel_size", "stride", "dilations"):
            check_positive(problems, name, getattr(self, name), high=MAX_KERNEL)
        check_odd(problems, "kernel_size", self.kernel_size)
        if len(self.dilations) > MAX_DILATIONS:
            problems.append(("dilations", f"expected at most {MAX_DILATIONS} dilated convs, got {len(self.dilations)}"))
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

    def channels(self, i: int) -> int:
        """Conv ``i``'s output channels: ``filters * filters_scale ** i``, capped, times ``width``."""
        return scaled(min(self.filters_scale**i * self.filters, self.max_filters), self.width)

    def parameter_count(self) -> int:
        """The parameters an MS-STFTD of this config holds (what ``check`` bounds before anything is built)."""
        k = self.kernel_size[0] * self.kernel_size[1]
        square = self.kernel_size[0] ** 2
        per_scale = conv_parameters(2, self.channels(0), k, norm="none")
        cin = self.channels(0)
        for i in range(len(self.dilations)):
            per_scale += conv_parameters(cin, self.channels(i + 1), k, norm=self.norm)
            cin = self.channels(i + 1)
        last = self.channels(len(self.dilations) + 1)
        per_scale += conv_parameters(cin, last, square, norm=self.norm) + conv_parameters(
            last, 1, square, norm=self.norm
        )
        return per_scale * len(self.n_ffts)


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
        k, channels = config.kernel_size, config.channels
        convs = [conv2d(2, channels(0), k, padding=same_padding(k), norm="none")]
        # audiocraft gives the second conv channels(1) inputs, which only runs with filters_scale 1 (where
        # channels(0) == channels(1)); the first conv's own output count runs with any
        cin = channels(0)
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
        # contiguous: torch.stft's output is frequency-fastest, so the permuted view is channels_last, and the
        # convs would then all run oneDNN's channels_last kernels (about 1.5x the float32 rounding, values that
        # differ from audiocraft's); in the default layout every float32 feature map and logit is audiocraft's own
        z = torch.view_as_real(spec).permute(0, 3, 2, 1).contiguous()
        return conv_stack(self.convs, self.conv_post, z, self.config.negative_slope, self.config)


class MSSTFTD(Discriminator):
    """Multi-scale STFT discriminator: one STFTDiscriminator per scale."""

    name = "msstftd"
    config_class = MSSTFTDConfig
    # Fake and real judged apart in D's step, as audiocraft's AdversarialLoss.train_adv does: a bias's gradient
    # is a sum whose fake and real terms cancel (by 38-124x at the first scale's conv_post), and summed over one
    # concatenated batch its float32 rounding differed from audiocraft's by up to 2e-5 of D's largest gradient.
    judges_jointly = False

    def __init__(self, config: MSSTFTDConfig) -> None:
        super().__init__(config)
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(n, h, w, config) for n, h, w in zip(config.n_ffts, config.hop_lengths, config.win_lengths)
        )

    def judge(self, x: torch.Tensor) -> list[SubOutput]:
        return [d(x) for d in self.discriminators]

    def min_samples(self) -> tuple[int, str]:
        """The uncentred STFT needs a whole frame of the largest FFT size."""
        ffts = self.config.n_ffts
        i = max(range(len(ffts)), key=lambda j: ffts[j])
        return ffts[i], f"n_ffts[{i}]={ffts[i]} frames without padding (center = False)"
