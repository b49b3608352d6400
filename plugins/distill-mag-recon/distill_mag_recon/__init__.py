"""distill plugin: ``mag_recon``, the L1 distance of the magnitude channel."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch

from distill_core import LossTerm, Weight, hookimpl
from distill_core.seed.checks import check_spectrograms
from distill_core.terms.base import Batch, upcast

__version__ = "0.1.0"


@attrs.define
class MagReconConfig:
    """Only a weight: the L1 distance has no options."""

    weight: Weight = 1.0


class MagReconLoss(LossTerm):
    """mean |recon[:, 0] - target[:, 0]| over batch, frequency and time."""

    name = "mag_recon"
    config_class = MagReconConfig
    requires = ("recon", "target")
    layouts = {"recon": "B, 2, F, T", "target": "B, 2, F, T"}
    zero_at_identity = True

    def forward(self, batch: Batch) -> torch.Tensor:
        recon, target = upcast(*check_spectrograms(self.name, batch))
        return (recon[:, 0] - target[:, 0]).abs().mean()


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    register(MagReconLoss)
