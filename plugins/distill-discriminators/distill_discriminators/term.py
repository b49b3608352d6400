"""The ``adversarial`` loss term: an Adversarial in a CombinedLoss, with two outputs from one D forward.

``gen`` (adversarial) and ``feat`` (feature matching) are logged as ``<name>_gen_loss`` and ``<name>_feat_loss``,
each weighted on its own (the preset's ``gen_weight`` and ``feat_weight`` unless the entry's ``outputs = {...}``
says else). ``CombinedLoss.update(batch)`` runs D's step (``update``) once per training batch, before the loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from distill_core import LossTerm
from distill_core.terms.base import Batch

from .adversarial import Adversarial, check_pair
from .config import AdversarialConfig


class AdversarialLoss(LossTerm):
    """Adversarial + feature-matching loss of waveforms ``recon`` against ``target`` ([B, C, N])."""

    name = "adversarial"
    config_class = AdversarialConfig
    requires = ("recon", "target")
    layouts: ClassVar[dict[str, str]] = {"recon": "B, C, N", "target": "B, C, N"}
    outputs = ("gen", "feat")
    figures = ("disc_loss", "real_score", "fake_score")

    @classmethod
    def output_weights(cls, config: AdversarialConfig) -> Mapping[str, Any]:
        """The preset's (or the config's) lambdas: DAC gen 1 feat 2, HiFi-GAN 1/2, EnCodec 4/4, Vocos 1/1."""
        return {"gen": config.gen_weight, "feat": config.feat_weight}

    def __init__(self, config: AdversarialConfig) -> None:
        super().__init__(config)
        self.adversarial = Adversarial(config)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``{"gen", "feat"}``, unweighted, from one D forward with D read-only."""
        return self.adversarial(*self.waveforms(batch))

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """D's step on ``batch['recon'].detach()`` against ``batch['target']``; never call it in validation."""
        return self.adversarial.update(*self.waveforms(batch))

    def waveforms(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``recon`` and ``target`` checked as the discriminators read them, the errors naming these keys."""
        return check_pair(self.adversarial, batch["recon"], batch["target"], ("recon", "target"))

    def end_epoch(self) -> None:
        """D's per-epoch schedule (HiFi-GAN's ExponentialLR), stepped by CombinedLoss.end_epoch."""
        self.adversarial.end_epoch()
