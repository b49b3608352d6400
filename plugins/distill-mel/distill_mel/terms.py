"""The two terms: a closed-form spectral loss of recon and target waveforms each, built on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from distill_core import LossTerm
from distill_core.terms.base import Batch, BatchError, check_pair, upcast

from .config import AudiocraftConfig, MelConfig

if TYPE_CHECKING:  # pragma: no cover
    from .fast import ClosedFormLoss


class _WaveformSpectralTerm(LossTerm):
    """A closed-form spectral loss of recon and target waveforms [B, C, N], the target a constant."""

    requires = ("recon", "target")
    layouts: ClassVar[dict[str, str]] = {"recon": "B, C, N", "target": "B, C, N"}
    zero_at_identity = True
    loss: ClosedFormLoss
    min_samples: int
    padding: str  # what needs min_samples, for the message

    def forward(self, batch: Batch) -> torch.Tensor:
        x, y = check_pair(self.name, batch, "recon", "target", self.layouts["recon"])
        if x.shape[-1] < self.min_samples:
            raise BatchError(
                f"{self.name}: batch['recon'] has {x.shape[-1]} samples; {self.padding} needs more "
                f"than {self.min_samples - 1}"
            )
        if y.requires_grad and torch.is_grad_enabled():
            raise BatchError(
                f"{self.name}: batch['target'] requires grad, but the {self.name} term treats the "
                f"target as a constant; pass target.detach()"
            )
        x, y = upcast(x, y)
        with torch.autocast(x.device.type, enabled=False):  # FFTs and logs in float32 or wider
            return self.loss(x, y.to(x.dtype))


class MelLoss(_WaveformSpectralTerm):
    """Sum over scales of L1 between log10 mel magnitudes of recon and target waveforms [B, C, N]."""

    name = "mel"
    config_class = MelConfig

    def __init__(self, config: MelConfig) -> None:
        super().__init__(config)
        from .fast import MultiScaleMel  # lazy: discovery registers the term without the loss's module

        self.loss = MultiScaleMel(config)
        longest = max(range(len(config.window_lengths)), key=lambda i: config.window_lengths[i])
        window = config.window_lengths[longest]
        self.min_samples = window // 2 + 1
        self.padding = f"the reflect padding of window_lengths[{longest}]={window}"


class AudiocraftMsspecLoss(_WaveformSpectralTerm):
    """audiocraft's MultiScaleMelSpectrogramLoss: L1 of mel power plus MSE of its log10, over scales 2^i."""

    name = "audiocraft_msspec"
    config_class = AudiocraftConfig

    def __init__(self, config: AudiocraftConfig) -> None:
        super().__init__(config)
        from .audiocraft import AudiocraftMel  # lazy: discovery registers the term without the loss's module

        self.loss = AudiocraftMel(config)
        self.min_samples = self.loss.pad + 1
        self.padding = (
            f"the reflect padding of (w - w // 4) // 2 = {self.loss.pad} for the window 2^{config.range_end - 1}"
        )
