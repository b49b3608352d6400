"""What every discriminator returns and shares: per sub-discriminator its feature maps and its logits."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from distill_core import InvalidConfig

Problems = list[tuple[str, str]]


class SubOutput(NamedTuple):
    """One sub-discriminator's judgement: its hidden feature maps, in layer order, and its final logits."""

    features: list[torch.Tensor]
    logits: torch.Tensor


@attrs.define
class CommonOptions:
    """Options every discriminator has; the anchors differ in them, so they are settings, not code paths.

    ``normalize_input``: remove each signal's mean and peak-normalise it to 0.8 first (DAC does it for every
    sub-discriminator, Vocos inside its MRD only). ``first_layer_features``: return each conv stack's first
    layer among the features (Vocos leaves it out of feature matching).
    """

    normalize_input: bool = False
    first_layer_features: bool = True


class Discriminator(nn.Module):
    """A multi-discriminator: sub-discriminators that judge the same waveforms ``[B, C, N]`` each their own way.

    Channels are judged as separate signals (folded into the batch). Subclasses set ``name`` (the ``kind`` a
    config names) and ``config_class``, and implement ``judge`` on ``[B * C, 1, N]``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor) -> list[SubOutput]:
        if x.dim() != 3:
            raise ValueError(f"discriminator {self.name!r}: expected waveforms [B, C, N], got shape {list(x.shape)}")
        x = x.reshape(-1, 1, x.shape[-1])
        if self.config.normalize_input:
            x = x - x.mean(dim=-1, keepdim=True)
            x = 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)
        return self.judge(x)

    def judge(self, x: torch.Tensor) -> list[SubOutput]:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return repr(self.config)


def keep_features(features: list[torch.Tensor], config: CommonOptions) -> list[torch.Tensor]:
    """A conv stack's feature maps as the config asks: with or without the first layer's."""
    return features if config.first_layer_features else features[1:]


def conv_stack(
    convs: nn.ModuleList, post: nn.Module, z: torch.Tensor, negative_slope: float, config: CommonOptions
) -> SubOutput:
    """A sub-discriminator's conv stack run to its logit layer: each conv then a leaky ReLU, the feature maps
    kept as the config asks."""
    features = []
    for conv in convs:
        z = F.leaky_relu(conv(z), negative_slope)
        features.append(z)
    return SubOutput(keep_features(features, config), post(z))


def scaled(channels: int, width: float) -> int:
    """A channel count times the width multiplier, at least 1."""
    return max(1, int(channels * width))


def check_positive(problems: Problems, name: str, values: Any, what: str = "an integer >= 1") -> None:
    """Add a problem for each entry of ``values`` (or the one value) that is not >= 1."""
    if isinstance(values, (tuple, list)):
        if not values:
            problems.append((name, "expected at least one entry"))
        for i, v in enumerate(values):
            if not v >= 1:
                problems.append((f"{name}[{i}]", f"expected {what}, got {v!r}"))
    elif not values >= 1:
        problems.append((name, f"expected {what}, got {values!r}"))


def check_width(problems: Problems, width: float) -> None:
    """The channel multiplier must be a positive finite number."""
    if not (width > 0 and width < float("inf")):
        problems.append(("width", f"expected a channel multiplier > 0, got {width!r}"))


def raise_problems(problems: Problems) -> None:
    """Every problem at once, each naming its field (the core turns them into config paths)."""
    if problems:
        raise InvalidConfig(problems)
