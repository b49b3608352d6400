"""A small convolutional VAE for [B, 2, F, T] spectrograms: the demo's model."""

from __future__ import annotations

import torch
from torch import nn


class SpectrogramVAE(nn.Module):
    """Four stride-2 conv blocks down to a latent vector and back; forward returns (recon, mu, logvar).

    Channel 0 (log1p magnitude) comes out through softplus (non-negative); channel 1 (IF) through tanh.
    """

    def __init__(self, bins: int = 256, frames: int = 64, latent_dim: int = 32, width: int = 16) -> None:
        super().__init__()
        if bins % 16 or frames % 16:
            raise ValueError(f"SpectrogramVAE needs bins and frames divisible by 16, got {bins} x {frames}")
        chans = [2, width, 2 * width, 4 * width, 4 * width]
        down: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            down += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.GroupNorm(4, b), nn.SiLU()]
        self.encoder = nn.Sequential(*down, nn.Flatten())
        self.grid = (chans[-1], bins // 16, frames // 16)
        flat = chans[-1] * (bins // 16) * (frames // 16)
        self.to_stats = nn.Linear(flat, 2 * latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)
        up: list[nn.Module] = []
        rev = chans[::-1]
        for a, b in zip(rev[:-2], rev[1:-1]):
            up += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.GroupNorm(4, b), nn.SiLU()]
        up += [nn.ConvTranspose2d(rev[-2], 2, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*up)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.from_latent(z).view(-1, *self.grid))
        return torch.stack([nn.functional.softplus(out[:, 0]), torch.tanh(out[:, 1])], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z), mu, logvar
