"""distill plugin: ``wave_l1``, the L1 distance of two waveforms, sample by sample."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch

from distill_core import LossTerm, Weight, hookimpl
from distill_core.terms.base import Batch, check_pair, upcast

__version__ = "0.1.0"


@attrs.define
class WaveL1Config:
    """Only a weight: the L1 distance has no options."""

    weight: Weight = 1.0


class WaveL1Loss(LossTerm):
    """mean |recon - target| over batch, channels and samples."""

    name = "wave_l1"
    config_class = WaveL1Config
    requires = ("recon", "target")
    layouts = {"recon": "B, C, N", "target": "B, C, N"}
    zero_at_identity = True

    def forward(self, batch: Batch) -> torch.Tensor:
        recon, target = upcast(*check_pair(self.name, batch, "recon", "target", "B, C, N"))
        return (recon - target).abs().mean()


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    register(WaveL1Loss)
