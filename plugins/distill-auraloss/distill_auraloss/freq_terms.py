"""The frequency-domain auraloss losses as terms: STFT, mel, chroma, multi-, random- and sum/difference-STFT.

What auraloss would only discover at the first batch (or never, returning NaN) is refused when the term is
built: a missing librosa or scipy, a filterbank band with no FFT bin, a mel/chroma loss without a sample
rate. auraloss's filterbanks are kept out of the term's state_dict (they are rebuilt from the config).
"""

from __future__ import annotations

from typing import Any

import auraloss
import numpy as np
import torch
from torch import nn

from distill_core import InvalidConfig

from .configs import (
    ChromaSTFTLossConfig,
    MelSTFTLossConfig,
    MultiResolutionSTFTLossConfig,
    RandomResolutionSTFTLossConfig,
    STFTLossConfig,
    SumAndDifferenceSTFTLossConfig,
)
from .needs import check_bands, filterbank, require
from .term import AuralossTerm, auraloss_kwargs


def transient_filterbanks(module: nn.Module) -> nn.Module:
    """Re-register auraloss's ``fb`` buffers as non-persistent: derived from the config, not state."""
    for m in module.modules():
        fb = dict(m.named_buffers(recurse=False)).get("fb")
        if fb is not None:
            delattr(m, "fb")
            m.register_buffer("fb", fb, persistent=False)
    return module


def with_chroma(module: nn.Module, sample_rate: float, n_chroma: int) -> nn.Module:
    """Give every STFTLoss inside ``module`` the chroma filterbank auraloss 0.4 fails to register itself.

    auraloss's STFTLoss(scale="chroma") registers librosa's numpy array as a buffer, a TypeError; its
    forward, given the same filterbank as a tensor, computes what the constructor intended.
    """
    for m in module.modules():
        if isinstance(m, auraloss.freq.STFTLoss):
            m.scale = "chroma"
            fb = filterbank("chroma", sample_rate, m.fft_size, n_chroma)
            m.register_buffer("fb", torch.from_numpy(fb), persistent=False)
    return module


class _SpectralTerm(AuralossTerm):
    """A term around an auraloss STFTLoss or a combination of them."""

    zero_at_identity = True  # every component (SC, log/linear magnitude, phase) is 0 when recon == target
    bins_field = "n_bins"

    def fft_sizes(self, config: Any) -> list[int]:
        return list(getattr(config, "fft_sizes", None) or [config.fft_size])

    def scale(self, config: Any) -> str | None:
        return config.scale

    def shortest(self, config: Any) -> int:
        return max(self.fft_sizes(config)) // 2 + 1

    def length_reason(self) -> str:
        fft = max(self.fft_sizes(self.config))
        return (
            f"expected at least {fft // 2 + 1} samples (torch.stft reflect-pads each end by "
            f"fft_size // 2 = {fft // 2} for the largest fft size {fft})"
        )

    def refuse(self, config: Any) -> None:
        """Raise now for what auraloss would fail on (or silently turn into NaN) at the first batch."""
        kind = self.scale(config)
        if kind is not None:
            require(self.name, f"scale = {kind!r}", "librosa.filters", "librosa", "mel")
            if config.sample_rate is None:
                raise InvalidConfig(
                    [
                        (
                            "sample_rate",
                            f"{self.auraloss_name()} has no default sample rate; "
                            f"expected sample_rate = <Hz> in [terms.{self.name}]",
                        )
                    ]
                )
            check_bands(
                self.name,
                kind,
                config.sample_rate,
                self.fft_sizes(config),
                getattr(config, self.bins_field),
                self.bins_field,
            )
        if config.perceptual_weighting:
            require(self.name, "perceptual_weighting = true", "scipy.signal", "scipy", "perceptual")

    def build(self, config: Any) -> nn.Module:
        self.refuse(config)
        try:
            return transient_filterbanks(super().build(config))
        except TypeError as exc:  # auraloss 0.4 cannot build any chroma-scaled STFTLoss
            if self.scale(config) != "chroma" or "numpy.ndarray" not in str(exc):
                raise
        return with_chroma(self.build_unscaled(config), config.sample_rate, getattr(config, self.bins_field))

    def build_unscaled(self, config: Any) -> nn.Module:
        """The auraloss module with the same settings but no filterbank."""
        return self.wraps(**{**auraloss_kwargs(config), "scale": None})


class STFTLossTerm(_SpectralTerm):
    """One-resolution STFT loss (Yamamoto et al. 2019), optionally mel/chroma-scaled and A-weighted."""

    name = "auraloss_stft"
    config_class = STFTLossConfig
    wraps = auraloss.freq.STFTLoss


class MelSTFTLossTerm(_SpectralTerm):
    """STFT loss on librosa's Slaney mel filterbank."""

    name = "auraloss_melstft"
    config_class = MelSTFTLossConfig
    wraps = auraloss.freq.MelSTFTLoss
    bins_field = "n_mels"

    def scale(self, config: Any) -> str | None:
        return "mel"


class ChromaSTFTLossTerm(_SpectralTerm):
    """STFT loss on librosa's chroma filterbank (auraloss 0.4 cannot build it itself: see ``with_chroma``)."""

    name = "auraloss_chromastft"
    config_class = ChromaSTFTLossConfig
    wraps = auraloss.freq.ChromaSTFTLoss
    bins_field = "n_chroma"

    def scale(self, config: Any) -> str | None:
        return "chroma"

    def build_unscaled(self, config: Any) -> nn.Module:
        kwargs = auraloss_kwargs(config, drop=("sample_rate", "n_chroma"))
        return auraloss.freq.STFTLoss(**kwargs, sample_rate=config.sample_rate, scale=None, n_bins=config.n_chroma)


class MultiResolutionSTFTLossTerm(_SpectralTerm):
    """The mean of STFT losses over several resolutions (Yamamoto et al. 2019)."""

    name = "auraloss_mrstft"
    config_class = MultiResolutionSTFTLossConfig
    wraps = auraloss.freq.MultiResolutionSTFTLoss


class SumAndDifferenceSTFTLossTerm(_SpectralTerm):
    """Multi-resolution STFT loss of the mid (L+R) and side (L-R) signals of stereo pairs (Steinmetz et al. 2020)."""

    name = "auraloss_sdstft"
    config_class = SumAndDifferenceSTFTLossConfig
    wraps = auraloss.freq.SumAndDifferenceSTFTLoss
    layouts = {"recon": "B, 2, N", "target": "B, 2, N"}
    channels = 2


class _RandomResolution(auraloss.freq.RandomResolutionSTFTLoss):
    """auraloss's RandomResolutionSTFTLoss, whose draws may come from a numpy stream of its own (``seed``)
    and whose newly drawn filterbanks take the dtype of the input."""

    def __init__(self, *, seed: int | None, **kwargs: Any) -> None:
        self.stream = None if seed is None else np.random.RandomState(seed).get_state()
        self.compute_dtype = torch.float32
        super().__init__(**kwargs)

    def randomize_losses(self) -> None:
        if self.stream is None:
            super().randomize_losses()
        else:  # swap numpy's global state for this loss's own, draw, swap back
            outer = np.random.get_state()
            np.random.set_state(self.stream)
            try:
                super().randomize_losses()
            finally:
                self.stream = np.random.get_state()
                np.random.set_state(outer)
        transient_filterbanks(self.stft_losses)
        if self.compute_dtype != torch.float32:
            self.stft_losses.to(self.compute_dtype)


class RandomResolutionSTFTLossTerm(_SpectralTerm):
    """STFT losses at random resolutions, redrawn every ``randomize_rate`` calls (Steinmetz & Reiss 2020)."""

    name = "auraloss_rrstft"
    config_class = RandomResolutionSTFTLossConfig
    wraps = auraloss.freq.RandomResolutionSTFTLoss
    bins_field = "n_mels"
    loss: _RandomResolution  # what build returns

    def fft_sizes(self, config: Any) -> list[int]:
        return config.fft_sizes()

    def shortest(self, config: Any) -> int:
        return config.max_fft_size + 1

    def length_reason(self) -> str:
        return f"auraloss expects more than max_fft_size = {self.config.max_fft_size} samples"

    def refuse(self, config: Any) -> None:
        if config.scale is not None:  # the config has checked sample_rate and n_mels
            require(self.name, f"scale = {config.scale!r}", "librosa.filters", "librosa", "mel")
            check_bands(self.name, config.scale, config.sample_rate, self.fft_sizes(config), config.n_mels, "n_mels")

    def build(self, config: Any) -> _RandomResolution:
        self.refuse(config)
        return _RandomResolution(seed=config.seed, **auraloss_kwargs(config, drop=("seed",)))

    def follow_dtype(self, dtype: torch.dtype) -> None:
        self.loss.compute_dtype = dtype
        super().follow_dtype(dtype)


FREQ_TERMS = (
    STFTLossTerm,
    MelSTFTLossTerm,
    ChromaSTFTLossTerm,
    MultiResolutionSTFTLossTerm,
    RandomResolutionSTFTLossTerm,
    SumAndDifferenceSTFTLossTerm,
)
