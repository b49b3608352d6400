"""Waveform <-> 2-channel spectrogram: channel 0 log1p magnitude, channel 1 instantaneous frequency.

IF is the phase difference between consecutive frames, wrapped to (-pi, pi] and divided by pi, so it
lies in [-1, 1]; summing it back along time restores the phase exactly (modulo 2 pi).

With ``mel_bins``, channel 0 is log1p of the mel-filtered magnitude and channel 1 each band's IF averaged
over its bins, weighted by filter and magnitude. That inverse is approximate: magnitude through the
filterbank's pseudo-inverse, and every linear bin takes the IF of the band that weighs it most.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import attrs
import torch

from distill_core.dsp.mel import mel_filterbank
from distill_core.training.settings_file import load_settings, save_settings


@attrs.define(frozen=True)
class SpectrogramConfig:
    """The demo's analysis settings; ``n_fft // 2`` bins are kept (the Nyquist bin is dropped)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop: int = 128
    frames: int = 64
    mel_bins: int | None = None

    @property
    def bins(self) -> int:
        """Rows of the spectrogram: mel bands, or the linear bins below Nyquist."""
        return self.mel_bins or self.n_fft // 2

    @property
    def samples(self) -> int:
        """Clip length that gives exactly ``frames`` frames with a centred STFT."""
        return (self.frames - 1) * self.hop


def save_spectrogram_config(cfg: SpectrogramConfig, path: str | os.PathLike) -> Path:
    """JSON beside a run's checkpoints, so the run's model can be fed (distill-loss compare) later."""
    return save_settings(cfg, path)


def load_spectrogram_config(path: str | os.PathLike) -> SpectrogramConfig:
    """The settings save_spectrogram_config wrote; a CheckpointError names the file and the key when invalid."""
    return load_settings(path, SpectrogramConfig, "spectrogram")


def _window(cfg: SpectrogramConfig, like: torch.Tensor) -> torch.Tensor:
    return torch.hann_window(cfg.n_fft, dtype=like.dtype, device=like.device)


def _filterbank(cfg: SpectrogramConfig, like: torch.Tensor) -> torch.Tensor:
    """[mel_bins, n_fft // 2] mel filters over the kept linear bins."""
    assert cfg.mel_bins is not None
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.mel_bins)[:, : cfg.n_fft // 2]
    return torch.from_numpy(fb).to(dtype=like.dtype, device=like.device)


def to_spectrogram(wave: torch.Tensor, cfg: SpectrogramConfig) -> torch.Tensor:
    """[B, N] waveforms -> [B, 2, bins, frames] (log1p magnitude, IF in [-1, 1])."""
    spec = torch.stft(wave, cfg.n_fft, cfg.hop, window=_window(cfg, wave), return_complex=True)
    spec = spec[:, : cfg.n_fft // 2]
    magnitude = spec.abs()
    phase = torch.angle(spec)
    delta = torch.diff(phase, dim=-1, prepend=torch.zeros_like(phase[..., :1]))
    inst_freq = (torch.remainder(delta + math.pi, 2 * math.pi) - math.pi) / math.pi
    if cfg.mel_bins:
        fb = _filterbank(cfg, magnitude)
        weight = torch.matmul(fb, magnitude)
        inst_freq = torch.matmul(fb, magnitude * inst_freq) / weight.clamp(min=1e-8)
        magnitude = weight
    return torch.stack([torch.log1p(magnitude), inst_freq], dim=1)


def from_spectrogram(spec: torch.Tensor, cfg: SpectrogramConfig) -> torch.Tensor:
    """The inverse: phase by cumulative IF, then the inverse STFT; [B, 2, bins, T] -> [B, N]."""
    magnitude = torch.expm1(spec[:, 0].clamp(min=0))
    inst_freq = spec[:, 1]
    if cfg.mel_bins:
        fb = _filterbank(cfg, magnitude)
        magnitude = torch.matmul(torch.linalg.pinv(fb), magnitude).clamp(min=0)
        inst_freq = inst_freq[:, fb.argmax(dim=0)]
    phase = torch.cumsum(inst_freq * math.pi, dim=-1)
    complex_spec = torch.polar(magnitude, phase)
    nyquist = torch.zeros_like(complex_spec[:, :1])
    complex_spec = torch.cat([complex_spec, nyquist], dim=1)
    return torch.istft(complex_spec, cfg.n_fft, cfg.hop, window=_window(cfg, magnitude), length=cfg.samples)


class WaveformViews:
    """``recon_wave`` and ``target_wave`` ([B, 1, N]) for terms that read waveforms, from the spectrograms.

    ``recon_wave`` is ``from_spectrogram(recon)``, differentiable, so a waveform term's gradient reaches the
    model. ``target_wave`` is the inverse of the target spectrogram, not the original clip: then a perfect
    reconstruction scores exactly as the target does, and no term pushes the model to make up for what the
    representation itself loses (with ``mel_bins`` the inverse is approximate).
    """

    keys = ("recon_wave", "target_wave")
    differentiable = ("recon_wave",)

    def __init__(self, config: SpectrogramConfig) -> None:
        self.config = config

    def __call__(self, batch: Mapping[str, torch.Tensor], wanted: frozenset) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if "recon_wave" in wanted:
            out["recon_wave"] = from_spectrogram(batch["recon"].float(), self.config).unsqueeze(1)
        if "target_wave" in wanted:
            with torch.no_grad():
                out["target_wave"] = from_spectrogram(batch["target"].float(), self.config).unsqueeze(1)
        return out
