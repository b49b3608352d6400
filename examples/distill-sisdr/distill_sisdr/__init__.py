"""distill plugin: ``sisdr``, negative scale-invariant SDR on waveforms (Le Roux et al., 2019).

Written only against distill_core's public contract: LossTerm, hookimpl, Weight and the batch checks.
"""

from __future__ import annotations

import math

import attrs
import torch

from distill_core import LossTerm, Weight, hookimpl
from distill_core.terms.base import Batch, check_pair, upcast

__version__ = "0.1.0"


@attrs.define
class SISDRConfig:
    """``zero_mean`` removes DC first (the paper's definition); ``eps`` guards silent targets."""

    weight: Weight = 1.0
    zero_mean: bool = True
    eps: float = attrs.field(default=1e-8)

    @eps.validator
    def _eps_positive(self, attribute: attrs.Attribute, value: float) -> None:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"eps: expected a finite eps > 0, got {value!r}")


class SISDRLoss(LossTerm):
    """-SI-SDR in dB, averaged over batch and channels: lower is better, like every loss."""

    name = "sisdr"
    config_class = SISDRConfig
    requires = ("recon", "target")
    layouts = {"recon": "B, C, N", "target": "B, C, N"}

    def forward(self, batch: Batch) -> torch.Tensor:
        recon, target = upcast(*check_pair(self.name, batch, "recon", "target", "B, C, N"))
        eps = self.config.eps
        if self.config.zero_mean:
            recon = recon - recon.mean(dim=-1, keepdim=True)
            target = target - target.mean(dim=-1, keepdim=True)
        alpha = (recon * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
        projection = alpha * target
        noise = recon - projection
        ratio = (projection.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps)
        return -10 * torch.log10(ratio).mean()


@hookimpl
def distill_loss_terms(register) -> None:
    register(SISDRLoss)
