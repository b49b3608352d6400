"""Waveform <-> 2-channel spectrogram: channel 0 log1p magnitude, channel 1 instantaneous frequency.

IF is the phase difference between consecutive frames, wrapped to (-pi, pi] and divided by pi, so it
lies in [-1, 1]; summing it back along time restores the phase exactly (modulo 2 pi).
"""

from __future__ import annotations

import math

import attrs
import torch


@attrs.define(frozen=True)
class SpectrogramConfig:
    """The demo's analysis settings; ``n_fft // 2`` bins are kept (the Nyquist bin is dropped)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop: int = 128
    frames: int = 64

    @property
    def bins(self) -> int:
        return self.n_fft // 2

    @property
    def samples(self) -> int:
        """Clip length that gives exactly ``frames`` frames with a centred STFT."""
        return (self.frames - 1) * self.hop


def _window(cfg: SpectrogramConfig, like: torch.Tensor) -> torch.Tensor:
    return torch.hann_window(cfg.n_fft, dtype=like.dtype, device=like.device)


def to_spectrogram(wave: torch.Tensor, cfg: SpectrogramConfig) -> torch.Tensor:
    """[B, N] waveforms -> [B, 2, n_fft // 2, frames] (log1p magnitude, IF in [-1, 1])."""
    spec = torch.stft(wave, cfg.n_fft, cfg.hop, window=_window(cfg, wave), return_complex=True)
    spec = spec[:, : cfg.bins]
    magnitude = torch.log1p(spec.abs())
    phase = torch.angle(spec)
    delta = torch.diff(phase, dim=-1, prepend=torch.zeros_like(phase[..., :1]))
    inst_freq = torch.remainder(delta + math.pi, 2 * math.pi) - math.pi
    return torch.stack([magnitude, inst_freq / math.pi], dim=1)


def from_spectrogram(spec: torch.Tensor, cfg: SpectrogramConfig) -> torch.Tensor:
    """The inverse: phase by cumulative IF, then the inverse STFT; [B, 2, F, T] -> [B, N]."""
    magnitude = torch.expm1(spec[:, 0].clamp(min=0))
    phase = torch.cumsum(spec[:, 1] * math.pi, dim=-1)
    complex_spec = torch.polar(magnitude, phase)
    nyquist = torch.zeros_like(complex_spec[:, :1])
    complex_spec = torch.cat([complex_spec, nyquist], dim=1)
    return torch.istft(complex_spec, cfg.n_fft, cfg.hop, window=_window(cfg, magnitude), length=cfg.samples)
