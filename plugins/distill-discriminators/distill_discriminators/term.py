"""The ``adversarial`` loss term: the generator's side of an Adversarial, in a CombinedLoss today.

Until the core calls stateful terms, a loop calls ``term.update(batch)`` (D's step) itself before the loss;
the term's value is ``gen_weight * gen + feat_weight * feat`` from one D forward.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from distill_core import LossTerm
from distill_core.terms import Batch

from .adversarial import Adversarial
from .config import AdversarialConfig


class AdversarialLoss(LossTerm):
    """Adversarial + feature-matching loss of waveforms ``recon`` against ``target`` ([B, C, N])."""

    name = "adversarial"
    config_class = AdversarialConfig
    requires = ("recon", "target")
    layouts: ClassVar[dict[str, str]] = {"recon": "B, C, N", "target": "B, C, N"}

    def __init__(self, config: AdversarialConfig) -> None:
        super().__init__(config)
        self.adversarial = Adversarial(config)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.adversarial.generator_loss(batch["recon"], batch["target"])

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """D's step on ``batch['recon'].detach()`` against ``batch['target']``; never call it in validation."""
        return self.adversarial.update(batch["recon"], batch["target"])
