"""Convolutions with the weight reparametrisations the anchors train with: weight norm, spectral norm, none."""

from __future__ import annotations

from typing import Any, Literal

from torch import nn
from torch.nn.utils import parametrizations, spectral_norm

Norm = Literal["weight", "spectral", "none"]


def normed(conv: nn.Module, norm: Norm) -> nn.Module:
    """``conv`` with its weight reparametrised.

    Weight norm is torch's parametrisation (``original0`` = g, ``original1`` = v of the older ``weight_g`` /
    ``weight_v``); spectral norm is ``torch.nn.utils.spectral_norm``, whose power iteration (v from u, then u
    from v, once per training forward) is the one HiFi-GAN and audiocraft train with.
    """
    if norm == "weight":
        return parametrizations.weight_norm(conv)
    if norm == "spectral":
        return spectral_norm(conv)
    return conv


def conv1d(*args: Any, norm: Norm = "weight", **kwargs: Any) -> nn.Module:
    """A normed Conv1d."""
    return normed(nn.Conv1d(*args, **kwargs), norm)


def conv2d(*args: Any, norm: Norm = "weight", **kwargs: Any) -> nn.Module:
    """A normed Conv2d."""
    return normed(nn.Conv2d(*args, **kwargs), norm)
