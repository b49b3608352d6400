"""distill plugin: the multi-resolution STFT loss term ``stft``."""

from __future__ import annotations

import torch
from torch import nn

from distill_core import LossTerm, hookimpl
from distill_core.terms import Batch, BatchError, check_pair, check_spectrograms, upcast

from .config import STFTConfig
from .fast import FastMultiResolutionSTFT
from distill_core.mel import mel_filterbank

__version__ = "0.1.0"
__all__ = ["STFTConfig", "STFTLoss", "FastMultiResolutionSTFT", "auraloss_reference"]


def auraloss_reference(config: STFTConfig) -> nn.Module:
    """auraloss's MultiResolutionSTFTLoss with the same settings: the oracle and the ``auraloss`` backend."""
    import auraloss

    mel = config.scale == "mel"
    return auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=list(config.fft_sizes), hop_sizes=list(config.hop_sizes), win_lengths=list(config.win_lengths),
        window=config.window, w_sc=config.w_sc, w_log_mag=config.w_log_mag, w_lin_mag=config.w_lin_mag,
        w_phs=0.0, sample_rate=config.sample_rate if mel else None, scale="mel" if mel else None,
        n_bins=config.n_bins if mel else None, mag_distance=config.mag_distance, eps=config.eps)


def check_mel_filters(config: STFTConfig) -> None:
    """Refuse mel settings that leave a filter with no FFT bin: its log magnitude would be -inf."""
    for fft in config.fft_sizes:
        empty = int((mel_filterbank(config.sample_rate, fft, config.n_bins).sum(axis=1) == 0).sum())
        if empty:
            raise ValueError(f"stft: scale='mel' with n_bins={config.n_bins} at sample_rate={config.sample_rate} "
                             f"leaves {empty} empty mel filters for fft_size {fft}; expected fewer n_bins "
                             f"or larger fft_sizes")


class STFTLoss(LossTerm):
    """Multi-resolution STFT loss on the magnitude channel (flattened per example) or on waveforms."""

    name = "stft"
    config_class = STFTConfig
    requires = ("recon", "target")
    zero_at_identity = True

    @classmethod
    def input_layouts(cls, config: STFTConfig) -> dict[str, str]:
        """Spectrograms (the magnitude channel is flattened) or waveforms, as ``input`` says."""
        layout = "B, 2, F, T" if config.input == "magnitude" else "B, C, N"
        return {"recon": layout, "target": layout}

    def __init__(self, config: STFTConfig) -> None:
        super().__init__(config)
        if config.scale == "mel":
            check_mel_filters(config)
        self.loss = FastMultiResolutionSTFT(config) if config.backend == "fast" else auraloss_reference(config)
        self.min_length = max(config.fft_sizes)

    def signals(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The [B, C, N] signals the loss compares, after the batch checks."""
        if self.config.input == "magnitude":
            recon, target = check_spectrograms(self.name, batch)
            b = recon.shape[0]
            x, y = recon[:, 0].reshape(b, 1, -1), target[:, 0].reshape(b, 1, -1)
            what = "flattened magnitude channel (F*T samples)"
        else:
            x, y = check_pair(self.name, batch, "recon", "target", "B, C, N")
            what = "waveform"
        if x.shape[-1] < self.min_length:
            raise BatchError(f"{self.name}: batch['recon'] {what} has {x.shape[-1]} samples, shorter than the "
                             f"largest FFT size {self.min_length}; expected at least {self.min_length}")
        return x, y

    def forward(self, batch: Batch) -> torch.Tensor:
        x, y = upcast(*self.signals(batch))
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        with torch.autocast(x.device.type, enabled=False):  # FFTs, logs and divisions in float32 or wider
            return self.loss(x, y).clamp(min=0.0)


@hookimpl
def distill_loss_terms(register) -> None:
    register(STFTLoss)
