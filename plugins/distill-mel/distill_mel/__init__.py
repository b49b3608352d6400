"""distill plugin: ``mel``, the multi-scale log-mel L1 loss as Descript's DAC trains with it."""

from __future__ import annotations

from typing import ClassVar

import torch

from distill_core import LossTerm, hookimpl
from distill_core.terms import Batch, BatchError, check_pair, upcast

from .config import MelConfig
from .fast import MultiScaleMel

__version__ = "0.1.0"
__all__ = ["MelConfig", "MelLoss", "MultiScaleMel"]


class MelLoss(LossTerm):
    """Sum over scales of L1 between log10 mel magnitudes of recon and target waveforms [B, C, N]."""

    name = "mel"
    config_class = MelConfig
    requires = ("recon", "target")
    layouts: ClassVar[dict[str, str]] = {"recon": "B, C, N", "target": "B, C, N"}
    zero_at_identity = True

    def __init__(self, config: MelConfig) -> None:
        super().__init__(config)
        self.loss = MultiScaleMel(config)
        self.longest = max(range(len(config.window_lengths)), key=lambda i: config.window_lengths[i])

    def forward(self, batch: Batch) -> torch.Tensor:
        x, y = check_pair(self.name, batch, "recon", "target", self.layouts["recon"])
        window = self.config.window_lengths[self.longest]
        if x.shape[-1] <= window // 2:
            raise BatchError(f"{self.name}: batch['recon'] has {x.shape[-1]} samples; the reflect padding of "
                             f"window_lengths[{self.longest}]={window} needs more than {window // 2}")
        if y.requires_grad and torch.is_grad_enabled():
            raise BatchError(f"{self.name}: batch['target'] requires grad, but the mel term treats the target as "
                             f"a constant; pass target.detach()")
        x, y = upcast(x, y)
        with torch.autocast(x.device.type, enabled=False):  # FFTs and logs in float32 or wider
            return self.loss(x, y.to(x.dtype))


@hookimpl
def distill_loss_terms(register) -> None:
    register(MelLoss)
