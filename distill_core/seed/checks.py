"""The seed's batch contract, for the terms that read its spectrograms and latents."""

from __future__ import annotations

import torch

from distill_core.terms.base import Batch, check_pair


def check_spectrograms(term: str, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The spectrogram contract: ``recon`` and ``target`` are [B, 2, F, T] (magnitude, IF)."""
    return check_pair(term, batch, "recon", "target", "B, 2, F, T", channels=2)


def check_latents(term: str, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The latent contract: ``mu`` and ``logvar`` are [B, D] of one shape."""
    return check_pair(term, batch, "mu", "logvar", "B, D")
