"""The two terms: 1 - STOI and 1 - ESTOI of recon against target, with their resampler and band matrix."""

from __future__ import annotations

from typing import ClassVar

import torch

from distill_core import LossTerm
from distill_core.terms.base import Batch, BatchError, check_pair, upcast

from .config import ESTOIConfig, STOIConfig
from .intelligibility import (
    FRAME,
    HOP,
    MIN_FRAMES,
    RATE,
    finite_rows,
    intelligibility,
    third_octave_matrix,
    wide_dtype,
)
from .resample import OctaveResample


class _IntelligibilityLoss(LossTerm):
    """1 - (E)STOI of recon (the processed signal) against target (the clean one), averaged over rows."""

    requires = ("recon", "target")
    layouts: ClassVar[dict[str, str]] = {"recon": "B, C, N", "target": "B, C, N"}
    zero_at_identity = True
    extended: ClassVar[bool]
    bands: torch.Tensor

    def __init__(self, config: STOIConfig | ESTOIConfig) -> None:
        super().__init__(config)
        self.resample = OctaveResample(config.sample_rate, RATE)
        self.register_buffer("bands", third_octave_matrix(), persistent=False)  # 0/1: exact in any dtype
        needed = FRAME + (MIN_FRAMES - 1) * HOP + 1  # samples at 10 kHz for MIN_FRAMES analysis frames
        self.min_samples = (needed - 1) * self.resample.down // self.resample.up + 1

    pairwise = True  # a score per channel, averaged: permutation-invariant training may assign by Hungarian

    def scores(self, batch: Batch) -> torch.Tensor:
        """The (E)STOI of each example's each channel, [B, C]."""
        x, y = check_pair(self.name, batch, "recon", "target", self.layouts["recon"])
        if x.shape[-1] < self.min_samples:
            raise BatchError(
                f"{self.name}: batch['recon'] has {x.shape[-1]} samples at sample_rate="
                f"{self.config.sample_rate}; expected at least {self.min_samples} "
                f"({self.min_samples / self.config.sample_rate:.3f} s) for one 30-frame segment"
            )
        x, y = upcast(x, y)
        wide = wide_dtype(x.device)  # up to the band energies: see intelligibility's module docstring
        with torch.autocast(x.device.type, enabled=False):  # FFTs, norms and divisions in float32 or wider
            processed = self.resample(x.reshape(-1, x.shape[-1]), wide)
            clean = self.resample(y.reshape(-1, y.shape[-1]), wide)
            score = intelligibility(
                clean,
                processed,
                extended=self.extended,
                dyn_range=self.config.dyn_range,
                beta=getattr(self.config, "beta", -15.0),
                bands=self.bands,
                dtype=x.dtype,
            )
            # a NaN or an infinity anywhere in an input, even where no frame reads it, makes its score NaN
            score = torch.where(finite_rows(x, y).view(-1), score, torch.full_like(score, torch.nan))
            return score.view(x.shape[0], -1)

    def per_example(self, batch: Batch) -> torch.Tensor:
        """1 - the mean score over each example's channels, [B] (for permutation-invariant training)."""
        return 1 - self.scores(batch).mean(dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return 1 - self.scores(batch).mean()


class STOILoss(_IntelligibilityLoss):
    """1 - STOI (Taal et al. 2011) of recon against target waveforms [B, C, N], each channel a row."""

    name = "stoi"
    config_class = STOIConfig
    extended = False


class ESTOILoss(_IntelligibilityLoss):
    """1 - ESTOI (Jensen & Taal 2016) of recon against target waveforms [B, C, N], each channel a row."""

    name = "estoi"
    config_class = ESTOIConfig
    extended = True
