"""Adversarial loss forms and feature matching over discriminator outputs; no host sync anywhere.

Under autocast, D's outputs come in bfloat16 or float16; every loss here is reduced in float32 (a bfloat16 mean
keeps 3 significant digits, and a hinge loss near 0 would be all rounding)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch.nn import functional as F

from .base import SubOutput

LossForm = Literal["lsgan", "hinge", "hinge_clamped"]
Reduce = Literal["sum", "mean"]


def _lsgan_gen(fake: torch.Tensor) -> torch.Tensor:
    return (1 - fake).pow(2).mean()


def _lsgan_real(real: torch.Tensor) -> torch.Tensor:
    return (1 - real).pow(2).mean()


def _lsgan_fake(fake: torch.Tensor) -> torch.Tensor:
    return fake.pow(2).mean()


def _hinge_gen(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def _hinge_clamped_gen(fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - fake).mean()


def _hinge_real(real: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean()


def _hinge_fake(fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 + fake).mean()


# form -> (generator's loss on D(fake), discriminator's loss on D(real), discriminator's loss on D(fake))
FORMS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]] = {
    "lsgan": (_lsgan_gen, _lsgan_real, _lsgan_fake),  # Mao et al. 2017: HiFi-GAN, DAC
    "hinge": (_hinge_gen, _hinge_real, _hinge_fake),  # Lim & Ye 2017: audiocraft's 'hinge'
    "hinge_clamped": (_hinge_clamped_gen, _hinge_real, _hinge_fake),  # Vocos; audiocraft's 'hinge2'
}


def wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is in a half-precision type; float32 and float64 as they are."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def reduce(values: list[torch.Tensor], how: Reduce) -> torch.Tensor:
    """Sum or mean of 0-dim tensors, on the device; any other ``how`` is refused, never taken for a sum."""
    if how not in ("sum", "mean"):
        raise ValueError(f"expected a reduction 'sum' or 'mean', got {how!r}")
    total = torch.stack(values).sum()
    return total / len(values) if how == "mean" else total


def generator_loss(form: str, fake: list[SubOutput], how: Reduce = "sum") -> torch.Tensor:
    """The generator's adversarial loss: each sub-discriminator's logits on fake, reduced over them."""
    gen = FORMS[form][0]
    return reduce([gen(wide(out.logits)) for out in fake], how)


def discriminator_loss(form: str, real: list[SubOutput], fake: list[SubOutput], how: Reduce = "sum") -> torch.Tensor:
    """The discriminator's loss: real towards 'real', fake towards 'fake', per sub-discriminator, reduced."""
    _, on_real, on_fake = FORMS[form]
    return reduce([on_real(wide(r.logits)) + on_fake(wide(f.logits)) for r, f in zip(real, fake)], how)


def feature_matching(
    real: list[SubOutput],
    fake: list[SubOutput],
    *,
    layers: Reduce = "sum",
    include_logits: bool = False,
    how: Reduce = "sum",
) -> torch.Tensor:
    """Mean absolute difference of each feature map (and the logits, if included), summed or averaged over a
    sub-discriminator's layers, then summed or averaged over sub-discriminators. The real side is a target."""
    per_sub = []
    for r, f in zip(real, fake):
        pairs = list(zip(r.features, f.features))
        if include_logits:
            pairs.append((r.logits, f.logits))
        per_sub.append(reduce([F.l1_loss(wide(fm), wide(rm.detach())) for rm, fm in pairs], layers))
    return reduce(per_sub, how)


def mean_score(outputs: list[SubOutput]) -> torch.Tensor:
    """The mean logit over sub-discriminators: how 'real' the discriminator finds a batch (a metric)."""
    return torch.stack([wide(o.logits).mean() for o in outputs]).mean()
