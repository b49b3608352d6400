"""The fast multi-resolution STFT loss: auraloss's numerics without its waste.

Per resolution it makes one windowed STFT of the input with autograd and one of the target without,
keeps the window as a buffer (moved with the module, not per call), takes log magnitude as
0.5 * log(power) instead of log(sqrt(power)), and never computes the phase.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import STFTConfig
from .mel import mel_filterbank


class FastMultiResolutionSTFT(nn.Module):
    """MultiResolutionSTFTLoss(x, y) for [B, C, N] signals, matching auraloss to float rounding."""

    def __init__(self, config: STFTConfig) -> None:
        super().__init__()
        self.config = config
        self.resolutions = list(zip(config.fft_sizes, config.hop_sizes, config.win_lengths))
        for i, (fft, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window{i}", getattr(torch, config.window)(win), persistent=False)
            if config.scale == "mel":
                fb = torch.from_numpy(mel_filterbank(config.sample_rate, fft, config.n_bins))
                self.register_buffer(f"melfb{i}", fb, persistent=False)

    def _magnitudes(self, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(magnitude, log magnitude) of one resolution, [B*C, F, T] (or mel bins)."""
        fft, hop, win = self.resolutions[i]
        window = getattr(self, f"window{i}")
        if window.dtype != x.dtype:
            window = window.to(x.dtype)
        spec = torch.stft(x, fft, hop, win, window, return_complex=True)
        power = torch.view_as_real(spec).pow(2).sum(-1).clamp(min=self.config.eps)
        if self.config.scale == "mel":
            fb = getattr(self, f"melfb{i}")
            mag = torch.matmul(fb.to(x.dtype), power.sqrt())
            return mag, mag.log()
        return power.sqrt(), 0.5 * power.log()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        x = x.reshape(-1, x.shape[-1])
        y = y.reshape(-1, y.shape[-1])
        distance = torch.nn.functional.l1_loss if cfg.mag_distance == "L1" else torch.nn.functional.mse_loss
        total = x.new_zeros(())
        for i in range(len(self.resolutions)):
            x_mag, x_log = self._magnitudes(x, i)
            with torch.set_grad_enabled(torch.is_grad_enabled() and y.requires_grad):
                y_mag, y_log = self._magnitudes(y, i)
            loss = x.new_zeros(())
            if cfg.w_sc:
                loss = loss + cfg.w_sc * (torch.linalg.vector_norm(y_mag - x_mag) / torch.linalg.vector_norm(y_mag))
            if cfg.w_log_mag:
                loss = loss + cfg.w_log_mag * distance(x_log, y_log)
            if cfg.w_lin_mag:
                loss = loss + cfg.w_lin_mag * distance(x_mag, y_mag)
            total = total + loss
        return total / len(self.resolutions)
