"""distill plugin: ``kl``, the Gaussian KL divergence to N(0, I) with free bits."""

from __future__ import annotations

import math

import attrs
import torch

from distill_core import LinearWarmup, LossTerm, Weight, hookimpl, weight_at
from distill_core.terms import Batch, check_latents, upcast

__version__ = "0.1.0"


@attrs.define
class KLConfig:
    """Free bits per latent dimension; the weight is the recipe's linear warm-up by default."""

    weight: Weight = LinearWarmup(max=0.01, warmup_fraction=0.3)
    free_bits: float = attrs.field(default=0.1)

    @free_bits.validator
    def _free_bits_ok(self, attribute: attrs.Attribute, value: float) -> None:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"free_bits: expected a finite number >= 0, got {value!r}")

    @property
    def weight_max(self) -> float:
        """The weight the warm-up reaches (the seed's ``kl.weight_max``)."""
        return float(self.weight.max) if hasattr(self.weight, "max") else weight_at(self.weight)

    @property
    def warmup_fraction(self) -> float:
        """The fraction of epochs spent warming up (the seed's ``kl.warmup_fraction``); 0 when constant."""
        return self.weight.warmup_fraction if isinstance(self.weight, LinearWarmup) else 0.0


class KLLoss(LossTerm):
    """sum over latent dims of max(KL_d, free_bits), mean over the batch."""

    name = "kl"
    config_class = KLConfig
    requires = ("mu", "logvar")

    def forward(self, batch: Batch) -> torch.Tensor:
        mu, logvar = upcast(*check_latents(self.name, batch))
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
        return kl.clamp(min=self.config.free_bits).sum(dim=1).mean()


@hookimpl
def distill_loss_terms(register) -> None:
    register(KLLoss)
