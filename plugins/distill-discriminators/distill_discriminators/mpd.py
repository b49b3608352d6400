"""The multi-period discriminator (HiFi-GAN, Kong et al. 2020, §2.2): the waveform folded into [N / p, p]."""

from __future__ import annotations

import attrs
import torch
from torch import nn
from torch.nn import functional as F

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

CHANNELS = (32, 128, 512, 1024, 1024)


@attrs.define
class MPDConfig(CommonOptions):
    """One sub-discriminator per period; 2-D convolutions along the folded time axis.

    ``always_pad``: pad ``period - N % period`` samples even when N is a multiple of the period (DAC does;
    HiFi-GAN, BigVGAN and Vocos pad only when needed). ``width`` multiplies the channels (32 ... 1024), as
    BigVGAN's ``discriminator_channel_mult``.
    """

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    width: float = 1.0
    kernel_size: int = 5
    stride: int = 3
    negative_slope: float = 0.1
    always_pad: bool = False
    norm: Norm = "weight"

    def __attrs_post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        check_positive(problems, "periods", self.periods, high=MAX_SAMPLES)
        check_positive(problems, "kernel_size", self.kernel_size, high=MAX_KERNEL)
        check_positive(problems, "stride", self.stride, high=MAX_KERNEL)
        check_width(problems, self.width)
        check_odd(problems, "kernel_size", self.kernel_size)
        raise_problems(problems)

    def parameter_count(self) -> int:
        """The parameters an MPD of this config holds (what ``check`` bounds before anything is built)."""
        channels = [1] + [scaled(c, self.width) for c in CHANNELS]
        per_period = sum(
            conv_parameters(a, b, self.kernel_size, norm=self.norm) for a, b in zip(channels, channels[1:])
        )
        per_period += conv_parameters(channels[-1], 1, 3, norm=self.norm)
        return per_period * len(self.periods)


class PeriodDiscriminator(nn.Module):
    """One period: reflect-pad to a whole number of periods, fold, 5 strided convs, a 1-channel conv."""

    def __init__(self, period: int, config: MPDConfig) -> None:
        super().__init__()
        self.period, self.config = period, config
        k, s, pad = config.kernel_size, config.stride, config.kernel_size // 2
        channels = [1] + [scaled(c, config.width) for c in CHANNELS]
        strides = [s] * (len(CHANNELS) - 1) + [1]
        self.convs = nn.ModuleList(
            conv2d(cin, cout, (k, 1), (st, 1), padding=(pad, 0), norm=config.norm)
            for cin, cout, st in zip(channels, channels[1:], strides)
        )
        self.conv_post = conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0), norm=config.norm)

    def forward(self, x: torch.Tensor) -> SubOutput:
        n, p = x.shape[-1], self.period
        pad = p - n % p if self.config.always_pad else -n % p
        if pad:
            if pad >= n:
                raise ValueError(f"mpd: period {p} needs more than {pad} samples to reflect-pad, got {n}")
            x = F.pad(x, (0, pad), mode="reflect")
        x = x.view(x.shape[0], 1, -1, p)
        return conv_stack(self.convs, self.conv_post, x, self.config.negative_slope, self.config)


class MPD(Discriminator):
    """Multi-period discriminator: one PeriodDiscriminator per period."""

    name = "mpd"
    config_class = MPDConfig

    def __init__(self, config: MPDConfig) -> None:
        super().__init__(config)
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, config) for p in config.periods)

    def judge(self, x: torch.Tensor) -> list[SubOutput]:
        return [d(x) for d in self.discriminators]

    def min_samples(self) -> tuple[int, str]:
        """At least the longest period (more than it with ``always_pad``, which pads a whole period)."""
        i = max(range(len(self.config.periods)), key=lambda j: self.config.periods[j])
        p = self.config.periods[i]
        if self.config.always_pad:
            return p + 1, f"periods[{i}]={p} with always_pad reflect-pads up to {p} samples"
        return p, f"periods[{i}]={p} folds the signal into rows of {p}"
