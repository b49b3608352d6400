"""The seed's config classes under the seed's module path (``distill.training.config`` there): the seed
wing's dataclasses, each converting to the generic LossConfig."""

from __future__ import annotations

from distill_core.seed.config import KLLossConfig, LossConfig, ReconLossConfig, STFTLossConfig, to_loss_config

__all__ = ["LossConfig", "ReconLossConfig", "STFTLossConfig", "KLLossConfig", "to_loss_config"]
