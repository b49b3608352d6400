"""What every discriminator returns and shares: per sub-discriminator its feature maps and its logits."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from distill_core import InvalidConfig
from distill_core.terms.base import BatchError

Problems = list[tuple[str, str]]

# Sizes no discriminator can mean: each option's bound is in the message that refuses it.
MAX_SAMPLES = 2**16  # periods, FFT sizes, hops and windows, in samples (1.4 s at 48 kHz; the anchors: 11 to 2048)
MAX_KERNEL = 2**10  # kernel sizes, strides and dilations (the anchors: 1 to 41)
MAX_WIDTH = 16.0  # the channel multiplier (16 x the anchors' channels)
MAX_PARAMETERS = 2**29  # an ensemble's weights: 2 GiB in float32, ~8 GiB with gradients and AdamW's state


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
    # Whether D's step judges fake and real in one forward over both (concatenated: fewer, larger convs) or apart
    # (``judge_apart``); a kind whose batched forward peaks higher (the CQTD's) says False.
    judges_jointly: ClassVar[bool] = True

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor) -> list[SubOutput]:
        return self.judge(self.prepare(x))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Waveforms ``[B, C, N]`` as ``judge`` reads them: ``[B * C, 1, N]``, normalised where the config says."""
        if x.dim() != 3:
            raise BatchError(f"discriminator {self.name!r}: expected waveforms [B, C, N], got shape {list(x.shape)}")
        x = x.reshape(-1, 1, x.shape[-1])
        if self.config.normalize_input:
            x = x - x.mean(dim=-1, keepdim=True)
            x = 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)
        return x

    def judge_apart(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[list[SubOutput], list[SubOutput]]:
        """Real's sub-outputs and fake's, each judged alone (real first); a kind may interleave them sub by sub."""
        return self(real), self(fake)

    def judge(self, x: torch.Tensor) -> list[SubOutput]:  # pragma: no cover - abstract
        raise NotImplementedError

    def min_samples(self) -> tuple[int, str]:
        """The fewest samples per signal this discriminator judges (every longer signal works too), and what
        needs them, for the batch check's message; (1, "") unless a subclass says more."""
        return 1, ""

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


def check_positive(
    problems: Problems, name: str, values: Any, what: str = "an integer >= 1", high: int | None = None
) -> None:
    """Add a problem for each entry of ``values`` (or the one value) that is not >= 1, or above ``high``
    (the message then gives the bound)."""

    def check(path: str, v: Any) -> None:
        if not v >= 1:
            problems.append((path, f"expected {what}, got {v!r}"))
        elif high is not None and v > high:
            problems.append((path, f"expected at most {high}, got {v!r}: a size no discriminator can mean"))

    if isinstance(values, (tuple, list)):
        if not values:
            problems.append((name, "expected at least one entry"))
        for i, v in enumerate(values):
            check(f"{name}[{i}]", v)
    else:
        check(name, values)


def check_width(problems: Problems, width: float) -> None:
    """The channel multiplier must be a positive finite number, at most MAX_WIDTH."""
    if not (width > 0 and width < float("inf")):
        problems.append(("width", f"expected a channel multiplier > 0, got {width!r}"))
    elif width > MAX_WIDTH:
        problems.append(
            (
                "width",
                f"expected a channel multiplier of at most {MAX_WIDTH:g} (x the anchors' channels), got {width!r}",
            )
        )


def check_odd(problems: Problems, name: str, values: Any) -> None:
    """Kernels with 'same' padding must be odd (an even one shifts and shrinks every map)."""
    for i, v in enumerate(values if isinstance(values, (tuple, list)) else (values,)):
        if isinstance(v, int) and v >= 1 and v % 2 == 0:
            path = f"{name}[{i}]" if isinstance(values, (tuple, list)) else name
            problems.append((path, f"expected an odd kernel (same padding), got {v}"))


def conv_parameters(cin: int, cout: int, kernel: int, groups: int = 1, norm: str = "weight") -> int:
    """The parameters of one conv (weight, bias, and weight norm's per-channel g): what its build holds."""
    return cin // groups * cout * kernel + cout + (cout if norm == "weight" else 0)


def raise_problems(problems: Problems) -> None:
    """Every problem at once, each naming its field (the core turns them into config paths)."""
    if problems:
        raise InvalidConfig(problems)
