"""The seed's config classes, real dataclasses as the seed defines them, and their one conversion to the
generic LossConfig (``to_loss_config``).

``asdict``, ``replace``, ``fields`` and ``json.dumps(asdict(cfg))`` work as on the seed's. A seed config
compares equal to the generic config it converts to, and CombinedLoss, compute_combined_loss and train
take either.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from distill_core.loss.config import LossConfig as GenericLossConfig
from distill_core.loss.config import load_config


@dataclasses.dataclass
class STFTLossConfig:
    """The multi-resolution STFT term: its weight and the resolutions (auraloss's defaults x 2)."""

    weight: float = 1.0
    fft_sizes: tuple[int, ...] = (512, 1024, 2048)
    hop_sizes: tuple[int, ...] = (128, 256, 512)
    win_lengths: tuple[int, ...] = (512, 1024, 2048)


@dataclasses.dataclass
class ReconLossConfig:
    """The reconstruction group: ``weight * (magnitude_weight * mag_recon + if_weight * if_recon)``."""

    weight: float = 0.1
    magnitude_weight: float = 1.0
    if_weight: float = 0.5


@dataclasses.dataclass
class KLLossConfig:
    """The KL term: warmed up linearly to ``weight_max`` over ``warmup_fraction`` of training, free bits."""

    weight_max: float = 0.01
    warmup_fraction: float = 0.3
    free_bits: float = 0.1


@dataclasses.dataclass
class LossConfig:
    """The seed's whole loss config: its three parts."""

    stft: STFTLossConfig = dataclasses.field(default_factory=STFTLossConfig)
    reconstruction: ReconLossConfig = dataclasses.field(default_factory=ReconLossConfig)
    kl: KLLossConfig = dataclasses.field(default_factory=KLLossConfig)

    def to_loss_config(self) -> GenericLossConfig:
        """The generic config this one stands for (see ``to_loss_config``)."""
        return to_loss_config(self)

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, GenericLossConfig):
            return to_loss_config(self) == other
        if type(other) is not type(self):
            return NotImplemented
        return dataclasses.astuple(self) == dataclasses.astuple(other)


def to_loss_config(config: LossConfig) -> GenericLossConfig:
    """The generic config of a seed config: the ``vae`` recipe with the seed's three parts in place.

    Read as the seed's ``asdict`` layout is read from a file, so an invalid value is a ConfigError at the
    seed's path (``kl.warmup_fraction``).
    """
    if not isinstance(config, LossConfig):
        raise TypeError(f"to_loss_config: expected the seed's LossConfig, got {type(config).__name__}")
    return load_config(dataclasses.asdict(config))
