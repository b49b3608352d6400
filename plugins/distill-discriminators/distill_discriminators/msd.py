"""The multi-scale discriminator (MelGAN, Kumar et al. 2019; HiFi-GAN v1): grouped 1-D convs on the waveform,
average-pooled by 2 between scales, spectral norm on the first scale."""

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
    conv_parameters,
    conv_stack,
    raise_problems,
    scaled,
)
from .convs import Norm, conv1d

# (channels out, kernel, stride, groups) of HiFi-GAN's DiscriminatorS
LAYERS = (
    (128, 15, 1, 1),
    (128, 41, 2, 4),
    (256, 41, 2, 16),
    (512, 41, 4, 16),
    (1024, 41, 4, 16),
    (1024, 41, 1, 16),
    (1024, 5, 1, 1),
)
MAX_SCALES = 16  # each scale halves the signal: the 16th sees it 32768x shorter


@attrs.define
class MSDConfig(CommonOptions):
    """``scales`` sub-discriminators, scale i on the signal average-pooled (kernel 4, stride 2, padding 2) i
    times; ``spectral_first``: spectral norm on scale 0, weight norm elsewhere (HiFi-GAN). ``width``
    multiplies the channels (128 ... 1024); each scaled count must stay divisible by its conv's groups."""

    scales: int = 3
    width: float = 1.0
    negative_slope: float = 0.1
    spectral_first: bool = True

    def __attrs_post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        check_positive(problems, "scales", self.scales, high=MAX_SCALES)
        check_width(problems, self.width)
        if not problems:
            cin = 1
            for i, (cout, _, _, groups) in enumerate(LAYERS):
                cout = scaled(cout, self.width)
                if cin % groups or cout % groups:
                    problems.append(
                        (
                            "width",
                            f"width {self.width} gives conv {i} {cin} -> {cout} channels, "
                            f"not divisible by its {groups} groups; use a multiple of 1/8",
                        )
                    )
                    break
                cin = cout
        raise_problems(problems)

    def parameter_count(self) -> int:
        """The parameters an MSD of this config holds (what ``check`` bounds before anything is built)."""
        total = 0
        for i in range(self.scales):
            norm = "spectral" if i == 0 and self.spectral_first else "weight"
            cin = 1
            for cout, k, _, groups in LAYERS:
                cout = scaled(cout, self.width)
                total += conv_parameters(cin, cout, k, groups, norm)
                cin = cout
            total += conv_parameters(cin, 1, 3, norm=norm)
        return total


class ScaleDiscriminator(nn.Module):
    """One scale: 7 grouped, strided 1-D convs and a 1-channel conv."""

    def __init__(self, config: MSDConfig, norm: Norm) -> None:
        super().__init__()
        self.config = config
        convs, cin = [], 1
        for cout, k, s, g in LAYERS:
            cout = scaled(cout, config.width)
            convs.append(conv1d(cin, cout, k, s, groups=g, padding=k // 2, norm=norm))
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.conv_post = conv1d(cin, 1, 3, 1, padding=1, norm=norm)

    def forward(self, x: torch.Tensor) -> SubOutput:
        return conv_stack(self.convs, self.conv_post, x, self.config.negative_slope, self.config)


class MSD(Discriminator):
    """Multi-scale discriminator: ScaleDiscriminators on the signal and its 2x, 4x ... average-pooled copies."""

    name = "msd"
    config_class = MSDConfig

    def __init__(self, config: MSDConfig) -> None:
        super().__init__(config)
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(config, "spectral" if i == 0 and config.spectral_first else "weight")
            for i in range(config.scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def judge(self, x: torch.Tensor) -> list[SubOutput]:
        out = []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            out.append(d(x))
        return out
