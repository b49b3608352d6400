"""distill plugin: ``if_recon``, the instantaneous-frequency L1 weighted by the target's magnitude."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch

from distill_core import LossTerm, Weight, hookimpl
from distill_core.seed.checks import check_spectrograms
from distill_core.terms.base import Batch, upcast

__version__ = "0.1.0"


@attrs.define
class IFReconConfig:
    """``eps`` keeps the weights finite when the target is silent."""

    weight: Weight = 1.0
    eps: float = attrs.field(default=1e-8)

    @eps.validator
    def _eps_positive(self, attribute: attrs.Attribute, value: float) -> None:
        if not value > 0:
            raise ValueError(f"eps: expected eps > 0, got {value!r}")


class IFReconLoss(LossTerm):
    """mean(|recon_if - target_if| * w), w = target_mag / (mean(target_mag) + eps) over the whole batch.

    IF is meaningless where there is no energy, so loud bins count more and silent ones almost not at all.
    """

    name = "if_recon"
    config_class = IFReconConfig
    requires = ("recon", "target")
    layouts = {"recon": "B, 2, F, T", "target": "B, 2, F, T"}
    zero_at_identity = True

    def forward(self, batch: Batch) -> torch.Tensor:
        recon, target = upcast(*check_spectrograms(self.name, batch))
        target_mag = target[:, 0]
        weight = target_mag / (target_mag.mean() + self.config.eps)
        return ((recon[:, 1] - target[:, 1]).abs() * weight).mean()


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    register(IFReconLoss)
