"""The seed's loss functions, thin over CombinedLoss: compute_combined_loss, create_stft_loss, vae_loss, ...

The seed built an auraloss ``MultiResolutionSTFTLoss`` and called it on the flattened magnitude channel,
``fn(recon[:, 0:1].reshape(B, 1, -1), target[:, 0:1].reshape(B, 1, -1))``. ``create_stft_loss`` returns a
module called the same way (the installed ``stft`` term on signals), and ``compute_combined_loss`` takes
either that or auraloss's own module as ``_stft_loss_fn``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import nn

from distill_core.config.schedules import LinearWarmup
from distill_core.loss.combined import CombinedLoss
from distill_core.loss.config import as_loss_config
from distill_core.registry.discovery import get_registry
from distill_core.seed.checks import check_spectrograms
from distill_core.terms.base import Batch, LossTerm

SEED_KEYS = ("total_loss", "stft_loss", "mag_recon_loss", "if_recon_loss", "kl_loss", "recon_loss")
_CACHE: dict[tuple[int, int, str], tuple[Any, CombinedLoss]] = {}
_CACHE_SIZE = 8


class SignalSTFT(nn.Module):
    """The ``stft`` term on signals, called as ``fn(recon, target)`` on [B, C, N] tensors (auraloss's call)."""

    def __init__(self, term: nn.Module) -> None:
        super().__init__()
        self.term = term

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.term({"recon": recon, "target": target})


class FlattenedMagnitudeSTFT(LossTerm):
    """A seed-style STFT callable used as the ``stft`` term: it sees the magnitude channel flattened per example."""

    name = "stft"
    requires = ("recon", "target")

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__(None)
        self.fn = fn

    def forward(self, batch: Batch) -> torch.Tensor:
        recon, target = check_spectrograms(self.name, batch)
        b = recon.shape[0]
        return self.fn(recon[:, 0:1].reshape(b, 1, -1), target[:, 0:1].reshape(b, 1, -1)).clamp(min=0.0)

    def extra_repr(self) -> str:
        return f"fn={type(self.fn).__name__}"


def seed_prebuilt(stft: nn.Module | None) -> dict[str, nn.Module] | None:
    """CombinedLoss's ``prebuilt`` for the seed's STFT module: a term as it is, a signal callable wrapped."""
    if stft is None:
        return None
    return {"stft": stft if isinstance(stft, LossTerm) else FlattenedMagnitudeSTFT(stft)}


def combined_for(config: Any, stft: nn.Module | None = None, device: torch.device | str | None = None) -> CombinedLoss:
    """The CombinedLoss for a config (and the seed's prebuilt STFT module), built on first use and reused.

    ``config`` is a LossConfig, generic or the seed's. A config mutated since (``cfg.kl.weight_max = ...``)
    is rebuilt, never served stale.
    """
    key = (id(config), id(stft), str(device))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == config:
        return hit[1]
    loss = CombinedLoss(config, prebuilt=seed_prebuilt(stft))
    if device is not None:
        loss = loss.to(device)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (copy.deepcopy(config), loss)
    return loss


def seed_kl_weight(kl_weight: float) -> float:
    """The seed's meaning of an explicit KL weight: 0 or less leaves KL out; NaN or inf is an error."""
    value = float(kl_weight)
    if not math.isfinite(value):
        raise ValueError(f"kl_weight: expected a finite number (0 or less leaves KL out), got {kl_weight!r}")
    return max(value, 0.0)


def compute_combined_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    loss_config: Any,
    kl_weight: float,
    _stft_loss_fn: nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """The recipe's loss for one batch, the seed's keys: ``total_loss``, each ``<term>_loss`` and ``recon_loss``.

    ``kl_weight`` overrides the KL term's weight; 0 or less leaves KL out of the total, as the seed does.
    ``_stft_loss_fn`` is a module called on the flattened magnitude channel (``create_stft_loss``'s or
    auraloss's ``MultiResolutionSTFTLoss``). CombinedLoss's ``nonfinite`` flag is not among the seed's keys.
    """
    for argument, value in (("recon", recon), ("target", target), ("mu", mu), ("logvar", logvar)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"compute_combined_loss: argument {argument!r} expected a torch.Tensor, got {type(value).__name__}"
            )
    loss = combined_for(loss_config, _stft_loss_fn, recon.device)
    out = loss({"recon": recon, "target": target, "mu": mu, "logvar": logvar}, weights=kl_override(loss, kl_weight))
    return {k: v for k, v in out.items() if k != "nonfinite"}


def kl_override(loss: Any, kl_weight: float | None) -> dict[str, float] | None:
    """The weight override for an explicit seed ``kl_weight`` (None: the config's schedule)."""
    if kl_weight is None or "kl" not in loss.weights():
        return None
    return {"kl": seed_kl_weight(kl_weight)}


def create_stft_loss(loss_config: Any, device: torch.device | str = "cpu") -> nn.Module:
    """The config's ``stft`` term as the seed used its STFT module: ``fn(recon_flat, target_flat)`` on
    [B, 1, N] tensors, returning a scalar; built once, to pass as ``_stft_loss_fn`` / ``stft_loss_fn``."""
    info = get_registry().get("stft")
    config = as_loss_config(loss_config).terms["stft"]
    if attrs.has(type(config)) and "input" in attrs.fields_dict(type(config)):
        config = attrs.evolve(config, input="waveform")
    return SignalSTFT(info.cls(config)).to(device)


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) for each latent dimension, [B, D]."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def raw_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL summed over the latent, averaged over the batch, with no free bits: a 0-dim tensor."""
    return kl_per_dimension(mu, logvar).sum(dim=1).mean()


def _free_bits_kl(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    kl = kl_per_dimension(mu, logvar)
    return kl.clamp(min=free_bits).sum(dim=1).mean()


def vae_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_weight: float = 1.0,
    free_bits: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


class LegacyVAELoss(nn.Module):
    """The seed's ``vae_loss`` (MSE and free-bits KL) called as CombinedLoss is: what ``train_epoch`` runs
    with ``loss_config=None``."""

    reads = frozenset({"recon", "target", "mu", "logvar"})
    term_keys = ("recon_loss", "kl_loss")

    def __init__(self, free_bits: float = 0.1) -> None:
        super().__init__()
        self.free_bits = free_bits

    def weights(
        self, epoch: int | None = None, total_epochs: int | None = None, overrides: dict[str, float] | None = None
    ) -> dict[str, float]:
        """The KL weight: 1.0 unless overridden (``vae_loss``'s default)."""
        return {"kl": float((overrides or {}).get("kl", 1.0))}

    def forward(
        self,
        batch: Batch,
        *,
        epoch: int | None = None,
        total_epochs: int | None = None,
        weights: dict[str, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        total, recon, kl = vae_loss(
            batch["recon"],
            batch["target"],
            batch["mu"],
            batch["logvar"],
            self.weights(overrides=weights)["kl"],
            self.free_bits,
        )
        return {
            "total_loss": total,
            "recon_loss": recon,
            "kl_loss": kl,
            "nonfinite": (~torch.isfinite(total)).to(total.dtype),
        }


__all__ = [
    "compute_combined_loss",
    "create_stft_loss",
    "vae_loss",
    "get_kl_weight",
    "compute_kl_divergence",
    "kl_per_dimension",
    "raw_kl",
    "LegacyVAELoss",
    "SEED_KEYS",
]
