"""The seed's functional loss API (``distill.models`` there): the seed wing's, under the seed's path."""

from __future__ import annotations

from distill_core.seed.losses import (
    compute_combined_loss,
    compute_kl_divergence,
    create_stft_loss,
    get_kl_weight,
    kl_per_dimension,
    raw_kl,
    vae_loss,
)

__all__ = [
    "compute_combined_loss",
    "create_stft_loss",
    "vae_loss",
    "get_kl_weight",
    "compute_kl_divergence",
    "kl_per_dimension",
    "raw_kl",
]
