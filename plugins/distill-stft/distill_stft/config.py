"""The STFT term's config: auraloss's options, named as auraloss names them."""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np

from distill_core import InvalidConfig, Weight
from distill_core.dsp.mel import hz_to_mel, mel_to_hz

WINDOWS = ("hann_window", "hamming_window", "blackman_window", "bartlett_window", "kaiser_window")
MAX_SIZE = 2**20
"""Largest fft/hop/win size accepted: bigger ones are typos that would allocate terabytes."""
MAX_FILTERBANK = 2**26
"""Largest mel filterbank (n_bins * (fft // 2 + 1) entries, 256 MiB in float32) a config may ask for."""

_SIZES = {"schema": {"items": {"type": "integer", "minimum": 1, "maximum": MAX_SIZE}}}


def empty_mel_filters(sample_rate: float, n_fft: int, n_bins: int) -> int:
    """How many rows of librosa's Slaney mel filterbank are all zero, without building it.

    Filter i is a triangle over the open interval (edge[i], edge[i+2]) that peaks at edge[i+1]; it is
    empty when no FFT bin frequency k * sr / n_fft falls inside. The triangle is unimodal, so it is
    enough to evaluate librosa's own ramp formula at the few bins around each peak.
    """
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), n_bins + 2))
    low, peak, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    spacing = 1.0 / (n_fft * (1.0 / sample_rate))  # np.fft.rfftfreq's bin spacing, as librosa computes it
    bins = np.clip(np.floor(peak / spacing) + np.arange(-1, 3), 0, n_fft // 2)
    freqs = bins * spacing
    height = np.minimum((freqs - low) / (peak - low), (high - freqs) / (high - peak)).max(axis=1)
    return int((height <= 0).sum())


@attrs.define
class STFTConfig:
    """Multi-resolution STFT loss settings (sizes 1 to 2^20; defaults: the VAE recipe's three resolutions)."""

    weight: Weight = 1.0
    fft_sizes: tuple[int, ...] = attrs.field(default=(512, 1024, 2048), metadata=_SIZES)
    hop_sizes: tuple[int, ...] = attrs.field(default=(128, 256, 512), metadata=_SIZES)
    win_lengths: tuple[int, ...] = attrs.field(default=(512, 1024, 2048), metadata=_SIZES)
    window: Literal["hann_window", "hamming_window", "blackman_window", "bartlett_window", "kaiser_window"] = (
        "hann_window"
    )
    w_sc: float = 1.0
    w_log_mag: float = 1.0
    w_lin_mag: float = 0.0
    w_phs: float = 0.0
    mag_distance: Literal["L1", "L2"] = "L1"
    scale: Literal["linear", "mel"] = "linear"
    sample_rate: int | None = None
    n_bins: int | None = None
    perceptual_weighting: bool = False
    scale_invariance: bool = False
    reduction: Literal["mean", "sum", "none"] = "mean"
    output: Literal["loss", "full"] = "loss"
    eps: float = 1e-8
    input: Literal["magnitude", "waveform"] = "magnitude"
    backend: Literal["fast", "auraloss"] = "fast"

    def __attrs_post_init__(self) -> None:
        problems = self._size_problems()
        for key in ("w_sc", "w_log_mag", "w_lin_mag", "w_phs"):
            v = getattr(self, key)
            if not (v >= 0 and v != float("inf")):
                problems.append((key, f"expected a finite number >= 0, got {v!r}"))
        if not self.eps > 0:
            problems.append(("eps", f"expected eps > 0, got {self.eps!r}"))
        if self.reduction == "none":
            problems.append(
                (
                    "reduction",
                    "'none' makes auraloss return per-bin tensors of a different shape at "
                    "each resolution, and a term returns one number; expected 'mean' or "
                    "'sum'",
                )
            )
        needs_rate = [
            why
            for why, on in (
                ("scale = 'mel'", self.scale == "mel"),
                ("perceptual_weighting = true", self.perceptual_weighting),
            )
            if on
        ]
        if needs_rate and (self.sample_rate is None or not 0 < self.sample_rate <= MAX_SIZE):
            problems.append(
                (
                    "sample_rate",
                    "a positive sample_rate is required when "
                    f"{' and '.join(needs_rate)} (at most {MAX_SIZE}), "
                    f"got {self.sample_rate!r}",
                )
            )
        if self.scale == "mel":
            if self.n_bins is None or self.n_bins <= 0:
                problems.append(("n_bins", "a positive n_bins is required when scale = 'mel'"))
            elif not problems and self.sample_rate is not None:  # sizes and sample_rate are sound
                problems += self._mel_problems(self.sample_rate, self.n_bins)  # check the filterbank they make
        if problems:
            raise InvalidConfig(problems)

    def _size_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        sizes = {"fft_sizes": self.fft_sizes, "hop_sizes": self.hop_sizes, "win_lengths": self.win_lengths}
        lengths = {k: len(v) for k, v in sizes.items()}
        if 0 in lengths.values():
            problems += [(k, "expected at least one resolution") for k, n in lengths.items() if n == 0]
        elif len(set(lengths.values())) > 1:
            problems.append(
                (
                    "hop_sizes",
                    "fft_sizes, hop_sizes and win_lengths must have equal lengths, got "
                    + ", ".join(f"{k}={n}" for k, n in lengths.items()),
                )
            )
        for key, values in sizes.items():
            for i, v in enumerate(values):
                if v <= 0:
                    problems.append((f"{key}[{i}]", f"expected a positive size, got {v}"))
                elif v > MAX_SIZE:
                    problems.append((f"{key}[{i}]", f"expected a size <= {MAX_SIZE} (2^20), got {v}"))
        if not problems:
            for i, (fft, hop, win) in enumerate(zip(self.fft_sizes, self.hop_sizes, self.win_lengths)):
                if hop > win:
                    problems.append(
                        (f"hop_sizes[{i}]", f"hop {hop} exceeds win_lengths[{i}]={win}; expected hop <= win")
                    )
                if win > fft:
                    problems.append(
                        (f"win_lengths[{i}]", f"window {win} exceeds fft_sizes[{i}]={fft}; expected win <= fft")
                    )
        return problems

    def _mel_problems(self, sample_rate: int, n: int) -> list[tuple[str, str]]:
        """n_bins against every resolution: no more filters than bins, a bounded filterbank, no empty filter."""
        if any(n > f for f in self.fft_sizes):
            return [("n_bins", f"n_bins {n} exceeds the smallest FFT size {min(self.fft_sizes)}")]
        for i, fft in enumerate(self.fft_sizes):
            if n * (fft // 2 + 1) > MAX_FILTERBANK:
                return [
                    (
                        "n_bins",
                        f"n_bins {n} with fft_sizes[{i}]={fft} asks for a {n} x {fft // 2 + 1} mel "
                        f"filterbank; expected n_bins * (fft // 2 + 1) <= {MAX_FILTERBANK} (2^26)",
                    )
                ]
        for i, fft in enumerate(self.fft_sizes):
            empty = empty_mel_filters(sample_rate, fft, n)
            if empty:
                return [
                    (
                        "n_bins",
                        f"n_bins {n} at sample_rate {sample_rate} leaves {empty} empty mel "
                        f"filters for fft_sizes[{i}]={fft} (their log magnitude would be -inf); "
                        f"expected fewer n_bins or larger fft_sizes",
                    )
                ]
        return []
