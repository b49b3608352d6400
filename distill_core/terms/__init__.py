"""What a loss term is: LossTerm, the batch contract (keys, layouts, checks), permutation-invariant training."""

from __future__ import annotations

from distill_core.terms.base import (
    Batch,
    BatchError,
    LossTerm,
    check_batch_agrees,
    check_missing_keys,
    check_pair,
    check_tensor,
    upcast,
)

__all__ = [
    "Batch",
    "BatchError",
    "LossTerm",
    "check_batch_agrees",
    "check_missing_keys",
    "check_pair",
    "check_tensor",
    "upcast",
]
