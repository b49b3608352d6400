"""One attrs config per auraloss loss: the constructor's arguments, names and defaults, plus ``weight``.

Differences from the constructors, each forced by a term returning one 0-dim loss from a config file:
lists are tuples; ``device`` is absent (a term follows ``.to(device)``); ``reduction = "none"`` and
``output = "full"`` are refused; MelSTFTLoss's and ChromaSTFTLoss's ``sample_rate`` (no default in
auraloss) defaults to None, so that discovery can build the class, and a config file must give it;
SumAndDifferenceSTFTLoss's resolutions (no default in auraloss) default to MultiResolutionSTFTLoss's;
RandomResolutionSTFTLoss gains ``seed``.
"""

from __future__ import annotations

import math

import attrs

from distill_core import REQUIRED_IN_FILES, InvalidConfig, Weight

from .checks import (
    MAX_SIZE,
    WINDOWS,
    MagDistance,
    Output,
    Problem,
    Reduction,
    Scale,
    Window,
    at_least_zero,
    mel_bins,
    positive,
    positive_int,
    rate_in_hz,
    reduction,
    resolution_lists,
    resolutions,
    spectral,
)


def _raise(problems: list[Problem]) -> None:
    if problems:
        raise InvalidConfig(problems)


# --- time domain ----------------------------------------------------------------------------------------


@attrs.define
class ESRLossConfig:
    """auraloss.time.ESRLoss: error-to-signal ratio."""

    weight: Weight = 1.0
    eps: float = 1e-8
    reduction: Reduction = "mean"

    def __attrs_post_init__(self) -> None:
        _raise(at_least_zero("eps", self.eps) + reduction(self.reduction))


@attrs.define
class DCLossConfig:
    """auraloss.time.DCLoss: error of the DC offset relative to the signal's power."""

    weight: Weight = 1.0
    eps: float = 1e-8
    reduction: Reduction = "mean"

    def __attrs_post_init__(self) -> None:
        _raise(at_least_zero("eps", self.eps) + reduction(self.reduction))


@attrs.define
class LogCoshLossConfig:
    """auraloss.time.LogCoshLoss: log-cosh of the error, ``a`` the smoothness."""

    weight: Weight = 1.0
    a: float = 1.0
    eps: float = 1e-8
    reduction: Reduction = "mean"

    def __attrs_post_init__(self) -> None:
        _raise(positive("a", self.a) + at_least_zero("eps", self.eps) + reduction(self.reduction))


@attrs.define
class SNRLossConfig:
    """auraloss.time.SNRLoss: negative signal-to-noise ratio in dB."""

    weight: Weight = 1.0
    zero_mean: bool = True
    eps: float = 1e-8
    reduction: Reduction = "mean"

    def __attrs_post_init__(self) -> None:
        _raise(at_least_zero("eps", self.eps) + reduction(self.reduction))


@attrs.define
class SISDRLossConfig:
    """auraloss.time.SISDRLoss: negative scale-invariant signal-to-distortion ratio in dB."""

    weight: Weight = 1.0
    zero_mean: bool = True
    eps: float = 1e-8
    reduction: Reduction = "mean"

    def __attrs_post_init__(self) -> None:
        _raise(at_least_zero("eps", self.eps) + reduction(self.reduction))


@attrs.define
class SDSDRLossConfig:
    """auraloss.time.SDSDRLoss: negative scale-dependent signal-to-distortion ratio in dB."""

    weight: Weight = 1.0
    zero_mean: bool = True
    eps: float = 1e-8
    reduction: Reduction = "mean"

    def __attrs_post_init__(self) -> None:
        _raise(at_least_zero("eps", self.eps) + reduction(self.reduction))


# --- frequency domain -----------------------------------------------------------------------------------


@attrs.define
class STFTLossConfig:
    """auraloss.freq.STFTLoss: one resolution; spectral convergence, log/linear magnitude and phase terms."""

    weight: Weight = 1.0
    fft_size: int = 1024
    hop_size: int = 256
    win_length: int = 1024
    window: Window = "hann_window"
    w_sc: float = 1.0
    w_log_mag: float = 1.0
    w_lin_mag: float = 0.0
    w_phs: float = 0.0
    sample_rate: float | None = None
    scale: Scale | None = None
    n_bins: int | None = None
    perceptual_weighting: bool = False
    scale_invariance: bool = False
    eps: float = 1e-8
    output: Output = "loss"
    reduction: Reduction = "mean"
    mag_distance: MagDistance = "L1"

    def __attrs_post_init__(self) -> None:
        _raise(resolutions(self.fft_size, self.hop_size, self.win_length) + spectral(self, [self.fft_size]))


def _no_default_rate(loss: str) -> str:
    """Why a config file must give ``sample_rate`` (the class constructs without it, for discovery)."""
    return (
        f"missing: auraloss.freq.{loss} has no default sample rate; expected "
        "the audio's sample rate in Hz (e.g. sample_rate = 44100)"
    )


@attrs.define
class MelSTFTLossConfig:
    """auraloss.freq.MelSTFTLoss: STFTLoss on a mel filterbank (librosa's) of ``n_mels`` bands."""

    weight: Weight = 1.0
    sample_rate: float | None = attrs.field(default=None, metadata={REQUIRED_IN_FILES: _no_default_rate("MelSTFTLoss")})
    fft_size: int = 1024
    hop_size: int = 256
    win_length: int = 1024
    window: Window = "hann_window"
    w_sc: float = 1.0
    w_log_mag: float = 1.0
    w_lin_mag: float = 0.0
    w_phs: float = 0.0
    n_mels: int = 128
    perceptual_weighting: bool = False
    scale_invariance: bool = False
    eps: float = 1e-8
    output: Output = "loss"
    reduction: Reduction = "mean"
    mag_distance: MagDistance = "L1"

    def __attrs_post_init__(self) -> None:
        _raise(
            resolutions(self.fft_size, self.hop_size, self.win_length)
            + spectral(self, [self.fft_size], fixed_scale="mel", bins_field="n_mels")
        )


@attrs.define
class ChromaSTFTLossConfig:
    """auraloss.freq.ChromaSTFTLoss: STFTLoss on a chroma filterbank (librosa's) of ``n_chroma`` classes."""

    weight: Weight = 1.0
    sample_rate: float | None = attrs.field(
        default=None, metadata={REQUIRED_IN_FILES: _no_default_rate("ChromaSTFTLoss")}
    )
    fft_size: int = 1024
    hop_size: int = 256
    win_length: int = 1024
    window: Window = "hann_window"
    w_sc: float = 1.0
    w_log_mag: float = 1.0
    w_lin_mag: float = 0.0
    w_phs: float = 0.0
    n_chroma: int = 12
    perceptual_weighting: bool = False
    scale_invariance: bool = False
    eps: float = 1e-8
    output: Output = "loss"
    reduction: Reduction = "mean"
    mag_distance: MagDistance = "L1"

    def __attrs_post_init__(self) -> None:
        _raise(
            resolutions(self.fft_size, self.hop_size, self.win_length)
            + spectral(self, [self.fft_size], fixed_scale="chroma", bins_field="n_chroma")
        )


@attrs.define
class MultiResolutionSTFTLossConfig:
    """auraloss.freq.MultiResolutionSTFTLoss: the mean of one STFTLoss per (fft, hop, win) resolution."""

    weight: Weight = 1.0
    fft_sizes: tuple[int, ...] = (1024, 2048, 512)
    hop_sizes: tuple[int, ...] = (120, 240, 50)
    win_lengths: tuple[int, ...] = (600, 1200, 240)
    window: Window = "hann_window"
    w_sc: float = 1.0
    w_log_mag: float = 1.0
    w_lin_mag: float = 0.0
    w_phs: float = 0.0
    sample_rate: float | None = None
    scale: Scale | None = None
    n_bins: int | None = None
    perceptual_weighting: bool = False
    scale_invariance: bool = False
    eps: float = 1e-8
    output: Output = "loss"
    reduction: Reduction = "mean"
    mag_distance: MagDistance = "L1"

    def __attrs_post_init__(self) -> None:
        _raise(resolution_lists(self.fft_sizes, self.hop_sizes, self.win_lengths) + spectral(self, self.fft_sizes))


@attrs.define
class SumAndDifferenceSTFTLossConfig:
    """auraloss.freq.SumAndDifferenceSTFTLoss: multi-resolution STFT loss of the stereo sum and difference."""

    weight: Weight = 1.0
    fft_sizes: tuple[int, ...] = (1024, 2048, 512)
    hop_sizes: tuple[int, ...] = (120, 240, 50)
    win_lengths: tuple[int, ...] = (600, 1200, 240)
    window: Window = "hann_window"
    w_sum: float = 1.0
    w_diff: float = 1.0
    output: Output = "loss"
    # passed on to MultiResolutionSTFTLoss, as auraloss passes its **kwargs
    w_sc: float = 1.0
    w_log_mag: float = 1.0
    w_lin_mag: float = 0.0
    w_phs: float = 0.0
    sample_rate: float | None = None
    scale: Scale | None = None
    n_bins: int | None = None
    perceptual_weighting: bool = False
    scale_invariance: bool = False
    eps: float = 1e-8
    reduction: Reduction = "mean"
    mag_distance: MagDistance = "L1"

    def __attrs_post_init__(self) -> None:
        _raise(
            resolution_lists(self.fft_sizes, self.hop_sizes, self.win_lengths)
            + at_least_zero("w_sum", self.w_sum)
            + at_least_zero("w_diff", self.w_diff)
            + spectral(self, self.fft_sizes)
        )


def _power_of_two(path: str, value: int) -> list[Problem]:
    found = positive_int(path, value)
    if found or value & (value - 1) == 0:
        return found
    return [(path, f"expected a power of two (auraloss draws FFT sizes 2**k), got {value}")]


@attrs.define
class RandomResolutionSTFTLossConfig:
    """auraloss.freq.RandomResolutionSTFTLoss: STFT losses at resolutions redrawn every ``randomize_rate`` calls.

    FFT sizes are powers of two with min_fft_size <= fft < max_fft_size; hop = fft * U(min_hop_size,
    max_hop_size); window length fft, fft/2 or fft/4; window drawn from ``windows``. auraloss draws from
    numpy's global random state; ``seed`` (not an auraloss argument) gives the term a stream of its own.
    """

    weight: Weight = 1.0
    resolutions: int = 3
    min_fft_size: int = 16
    max_fft_size: int = 32768
    min_hop_size: float = 0.1
    max_hop_size: float = 1.0
    windows: tuple[Window, ...] = WINDOWS
    w_sc: float = 1.0
    w_log_mag: float = 1.0
    w_lin_mag: float = 0.0
    w_phs: float = 0.0
    sample_rate: float | None = None
    scale: Scale | None = None
    n_mels: int | None = None
    randomize_rate: int = 1
    seed: int | None = None

    def fft_sizes(self) -> list[int]:
        """Every FFT size auraloss can draw."""
        return [2**k for k in range(int(math.log2(self.min_fft_size)), int(math.log2(self.max_fft_size)))]

    def __attrs_post_init__(self) -> None:
        problems = positive_int("resolutions", self.resolutions) + positive_int("randomize_rate", self.randomize_rate)
        if self.seed is not None and not 0 <= self.seed < 2**32:
            problems.append(("seed", f"expected an integer in [0, 2**32) (numpy's seed range), got {self.seed}"))
        sizes = _power_of_two("min_fft_size", self.min_fft_size) + _power_of_two("max_fft_size", self.max_fft_size)
        if not sizes and self.min_fft_size >= self.max_fft_size:
            sizes.append(
                (
                    "max_fft_size",
                    f"expected max_fft_size > min_fft_size={self.min_fft_size} (the largest "
                    f"FFT drawn is max_fft_size / 2), got {self.max_fft_size}",
                )
            )
        elif not sizes and self.max_fft_size > 2 * MAX_SIZE:
            sizes.append(
                (
                    "max_fft_size",
                    f"expected max_fft_size <= {2 * MAX_SIZE} (2^21: the largest FFT drawn, "
                    f"max_fft_size / 2, at most 2^20), got {self.max_fft_size}",
                )
            )
        problems += sizes
        hops = positive("min_hop_size", self.min_hop_size) + positive("max_hop_size", self.max_hop_size)
        if not hops and self.min_hop_size > self.max_hop_size:
            hops.append(
                ("max_hop_size", f"expected max_hop_size >= min_hop_size={self.min_hop_size}, got {self.max_hop_size}")
            )
        if not hops and not sizes and self.min_fft_size * self.min_hop_size < 1:
            hops.append(
                (
                    "min_hop_size",
                    f"min_fft_size * min_hop_size = {self.min_fft_size * self.min_hop_size} "
                    "rounds to a hop of 0 samples; expected a product >= 1",
                )
            )
        problems += hops
        if not self.windows:
            problems.append(("windows", "expected at least one window"))
        for key in ("w_sc", "w_log_mag", "w_lin_mag", "w_phs"):
            problems += at_least_zero(key, getattr(self, key))
        if self.sample_rate is not None:
            problems += rate_in_hz("sample_rate", self.sample_rate)
        if self.scale == "chroma":
            problems.append(
                (
                    "scale",
                    "auraloss 0.4 cannot build chroma filterbanks inside "
                    "RandomResolutionSTFTLoss (it registers librosa's numpy array as a "
                    "buffer); expected 'mel' or none, or use auraloss_chromastft",
                )
            )
        elif self.scale == "mel":
            if self.sample_rate is None:
                problems.append(
                    ("sample_rate", "scale = 'mel' builds a filterbank for a sample rate; expected a sample_rate")
                )
            if self.n_mels is None:
                problems.append(("n_mels", "scale = 'mel' needs the number of mel bands; expected a positive integer"))
            else:
                found = positive_int("n_mels", self.n_mels)
                if not found and not sizes and self.n_mels > self.min_fft_size:
                    found.append(
                        (
                            "n_mels",
                            f"n_mels {self.n_mels} exceeds min_fft_size {self.min_fft_size}; "
                            "auraloss expects n_mels <= every FFT size it draws",
                        )
                    )
                elif not found and not sizes and self.sample_rate is not None and not rate_in_hz("", self.sample_rate):
                    found += mel_bins("n_mels", self.n_mels, self.sample_rate, self.fft_sizes())  # every size drawn
                problems += found
        _raise(problems)
