"""distill plugin: ``kl``, the Gaussian KL divergence to N(0, I) with free bits."""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import torch

from distill_core import Cyclical, LinearWarmup, LossTerm, Weight, hookimpl, weight_at
from distill_core.seed.checks import check_latents
from distill_core.terms.base import Batch, upcast

__version__ = "0.1.0"


_RECIPE_WARMUP = LinearWarmup(max=0.01, warmup_fraction=0.3)


@attrs.define(init=False)
class KLConfig:
    """Free bits per latent dimension; the weight is the recipe's linear warm-up by default.

    Also built as the seed built its ``KLLossConfig``: ``KLConfig(weight_max, warmup_fraction, free_bits)``,
    keyword or positional, meaning a linear warm-up to ``weight_max`` over that fraction of the epochs
    (missing ones take the seed's defaults, 0.01 and 0.3). ``weight`` (a number or any schedule) is the
    generic spelling; give one or the other.
    """

    weight: Weight = _RECIPE_WARMUP
    free_bits: float = attrs.field(default=0.1)

    def __init__(
        self,
        weight_max: float | None = None,
        warmup_fraction: float | None = None,
        free_bits: float = 0.1,
        *,
        weight: Weight | None = None,
    ) -> None:
        if weight is not None and (weight_max is not None or warmup_fraction is not None):
            raise ValueError("kl: give weight, or the seed's weight_max/warmup_fraction, not both")
        if weight is None:
            if weight_max is None and warmup_fraction is None:
                weight = _RECIPE_WARMUP
            else:
                weight = LinearWarmup(
                    max=_RECIPE_WARMUP.max if weight_max is None else weight_max,
                    warmup_fraction=_RECIPE_WARMUP.warmup_fraction if warmup_fraction is None else warmup_fraction,
                )
        self.__attrs_init__(weight, free_bits)

    @free_bits.validator
    def _free_bits_ok(self, attribute: attrs.Attribute, value: float) -> None:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"free_bits: expected a finite number >= 0, got {value!r}")

    @property
    def weight_max(self) -> float:
        """The weight the warm-up reaches (the seed's ``kl.weight_max``); assignable."""
        return float(self.weight.max) if hasattr(self.weight, "max") else weight_at(self.weight)

    @weight_max.setter
    def weight_max(self, value: float) -> None:
        if isinstance(self.weight, (int, float)):
            self.weight = float(value)
        elif isinstance(self.weight, (LinearWarmup, Cyclical)):  # the schedules with a maximum
            self.weight = attrs.evolve(self.weight, max=value)
        else:
            raise AttributeError(f"kl: a {type(self.weight).kind!r} weight has no maximum to set; assign weight")

    @property
    def warmup_fraction(self) -> float:
        """The fraction of epochs spent warming up (the seed's ``kl.warmup_fraction``); 0 when constant."""
        return self.weight.warmup_fraction if isinstance(self.weight, LinearWarmup) else 0.0

    @warmup_fraction.setter
    def warmup_fraction(self, value: float) -> None:
        if isinstance(self.weight, LinearWarmup):
            self.weight = attrs.evolve(self.weight, warmup_fraction=value)
        elif isinstance(self.weight, (int, float)):
            self.weight = LinearWarmup(max=float(self.weight), warmup_fraction=value)
        else:
            raise AttributeError(f"kl: a {type(self.weight).kind!r} weight has no warm-up to set; assign weight")


class KLLoss(LossTerm):
    """sum over latent dims of max(KL_d, free_bits), mean over the batch."""

    name = "kl"
    config_class = KLConfig
    requires = ("mu", "logvar")
    layouts = {"mu": "B, D", "logvar": "B, D"}

    def forward(self, batch: Batch) -> torch.Tensor:
        mu, logvar = upcast(*check_latents(self.name, batch))
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
        return kl.clamp(min=self.config.free_bits).sum(dim=1).mean()


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    register(KLLoss)
