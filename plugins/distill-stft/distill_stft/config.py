"""The STFT term's config: auraloss's options, named as auraloss names them."""

from __future__ import annotations

from typing import Literal

import attrs
from distill_core import InvalidConfig, Weight

WINDOWS = ("hann_window", "hamming_window", "blackman_window", "bartlett_window", "kaiser_window")


@attrs.define
class STFTConfig:
    """Multi-resolution STFT loss settings (defaults: the VAE recipe's three resolutions)."""

    weight: Weight = 1.0
    fft_sizes: tuple[int, ...] = (512, 1024, 2048)
    hop_sizes: tuple[int, ...] = (128, 256, 512)
    win_lengths: tuple[int, ...] = (512, 1024, 2048)
    window: Literal["hann_window", "hamming_window", "blackman_window", "bartlett_window",
                    "kaiser_window"] = "hann_window"
    w_sc: float = 1.0
    w_log_mag: float = 1.0
    w_lin_mag: float = 0.0
    mag_distance: Literal["L1", "L2"] = "L1"
    scale: Literal["linear", "mel"] = "linear"
    sample_rate: int | None = None
    n_bins: int | None = None
    eps: float = 1e-8
    input: Literal["magnitude", "waveform"] = "magnitude"
    backend: Literal["fast", "auraloss"] = "fast"

    def __attrs_post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        sizes = {"fft_sizes": self.fft_sizes, "hop_sizes": self.hop_sizes, "win_lengths": self.win_lengths}
        lengths = {k: len(v) for k, v in sizes.items()}
        if 0 in lengths.values():
            problems += [(k, "expected at least one resolution") for k, n in lengths.items() if n == 0]
        elif len(set(lengths.values())) > 1:
            problems.append(("hop_sizes", "fft_sizes, hop_sizes and win_lengths must have equal lengths, got "
                                          + ", ".join(f"{k}={n}" for k, n in lengths.items())))
        for key, values in sizes.items():
            for i, v in enumerate(values):
                if v <= 0:
                    problems.append((f"{key}[{i}]", f"expected a positive size, got {v}"))
        if not problems:
            for i, (fft, hop, win) in enumerate(zip(self.fft_sizes, self.hop_sizes, self.win_lengths)):
                if hop > win:
                    problems.append((f"hop_sizes[{i}]", f"hop {hop} exceeds win_lengths[{i}]={win}; expected hop <= win"))
                if win > fft:
                    problems.append((f"win_lengths[{i}]", f"window {win} exceeds fft_sizes[{i}]={fft}; "
                                                          "expected win <= fft"))
        for key in ("w_sc", "w_log_mag", "w_lin_mag"):
            v = getattr(self, key)
            if not (v >= 0 and v != float("inf")):
                problems.append((key, f"expected a finite number >= 0, got {v!r}"))
        if not self.eps > 0:
            problems.append(("eps", f"expected eps > 0, got {self.eps!r}"))
        if self.scale == "mel":
            if self.sample_rate is None or self.sample_rate <= 0:
                problems.append(("sample_rate", "a positive sample_rate is required when scale = 'mel'"))
            if self.n_bins is None or self.n_bins <= 0:
                problems.append(("n_bins", "a positive n_bins is required when scale = 'mel'"))
            elif any(self.n_bins > f for f in self.fft_sizes):
                problems.append(("n_bins", f"n_bins {self.n_bins} exceeds the smallest FFT size "
                                           f"{min(self.fft_sizes)}"))
        if problems:
            raise InvalidConfig(problems)
