"""The seed's functional API, thin over CombinedLoss, plus the legacy MSE + KL ``vae_loss``."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .combined import CombinedLoss
from .loss_config import LossConfig
from .schedules import LinearWarmup

_CACHE: dict[tuple[int, int, str], tuple[LossConfig, CombinedLoss]] = {}
_CACHE_SIZE = 8


def _combined_for(config: LossConfig, stft: nn.Module | None, device: torch.device) -> CombinedLoss:
    key = (id(config), id(stft), str(device))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == config:  # a mutated config is rebuilt, never served stale
        return hit[1]
    prebuilt = {"stft": stft} if stft is not None else None
    loss = CombinedLoss(config, prebuilt=prebuilt).to(device)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (copy.deepcopy(config), loss)
    return loss


def compute_combined_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                          loss_config: LossConfig, kl_weight: float,
                          _stft_loss_fn: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The recipe's loss for one batch: ``total_loss``, each ``<term>_loss`` and ``recon_loss``.

    The CombinedLoss behind it is built on first use for this config and device, then reused.
    """
    loss = _combined_for(loss_config, _stft_loss_fn, recon.device)
    return loss({"recon": recon, "target": target, "mu": mu, "logvar": logvar}, kl_weight=kl_weight)


def create_stft_loss(loss_config: LossConfig, device: torch.device | str = "cpu") -> nn.Module:
    """The ``stft`` term of ``loss_config`` built once on ``device``, to pass as ``_stft_loss_fn``."""
    from .plugins import get_registry

    info = get_registry().get("stft")
    return info.cls(loss_config.terms["stft"]).to(device)


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) for each latent dimension, [B, D]."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def raw_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL summed over the latent, averaged over the batch, with no free bits: a 0-dim tensor."""
    return kl_per_dimension(mu, logvar).sum(dim=1).mean()


def _free_bits_kl(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    kl = kl_per_dimension(mu, logvar)
    return kl.clamp(min=free_bits).sum(dim=1).mean()


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             kl_weight: float = 1.0, free_bits: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Legacy loss: (total, MSE reconstruction, free-bits KL); the KL is added only when kl_weight > 0."""
    recon_loss = torch.nn.functional.mse_loss(recon, target)
    kl = _free_bits_kl(mu, logvar, free_bits)
    total = recon_loss + kl_weight * kl if kl_weight > 0 else recon_loss
    return total, recon_loss, kl


def get_kl_weight(epoch: int, total_epochs: int, warmup_fraction: float = 0.3, kl_weight_max: float = 1.0) -> float:
    """The KL warm-up: linear from 0 over ``int(total_epochs * warmup_fraction)`` epochs, then the max."""
    return LinearWarmup(max=kl_weight_max, warmup_fraction=warmup_fraction).at(epoch, total_epochs)


def compute_kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> float:
    """Raw KL (no free bits), summed over the latent and averaged over the batch, as a float for metrics."""
    with torch.no_grad():
        return float(raw_kl(mu, logvar))


__all__: list[Any] = ["compute_combined_loss", "create_stft_loss", "vae_loss", "get_kl_weight",
                      "compute_kl_divergence"]
