"""Config checks shared by the auraloss terms: each returns the (field path, reason) problems it finds."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from distill_core.dsp.mel import mel_filterbank

Problem = tuple[str, str]

MAX_SIZE = 2**20
"""Largest FFT, hop and window size and sample rate accepted (as the stft term's): bigger ones are typos that
would allocate gigabytes or leave every mel band empty."""
MAX_FILTERBANK = 2**26
"""Largest filterbank (bins * (fft // 2 + 1) entries, 256 MiB in float32) a config may ask for."""

Reduction = Literal["mean", "sum", "none"]
Output = Literal["loss", "full"]
MagDistance = Literal["L1", "L2"]
Scale = Literal["mel", "chroma"]
Window = Literal["hann_window", "bartlett_window", "blackman_window", "hamming_window", "kaiser_window"]
WINDOWS: tuple[Window, ...] = ("hann_window", "bartlett_window", "blackman_window", "hamming_window", "kaiser_window")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def at_least_zero(path: str, value: Any) -> list[Problem]:
    """A weight or smoothing constant: a finite number >= 0."""
    return [] if _finite(value) and value >= 0 else [(path, f"expected a finite number >= 0, got {value!r}")]


def positive(path: str, value: Any, why: str = "") -> list[Problem]:
    """A finite number > 0 (eps under a log, a sample rate, a smoothness)."""
    return [] if _finite(value) and value > 0 else [(path, f"expected a finite number > 0{why}, got {value!r}")]


def positive_int(path: str, value: Any) -> list[Problem]:
    return [] if isinstance(value, int) and value > 0 else [(path, f"expected a positive integer, got {value!r}")]


def size(path: str, value: Any) -> list[Problem]:
    """An FFT, hop or window size: a positive integer up to 2^20."""
    found = positive_int(path, value)
    if not found and value > MAX_SIZE:
        found.append((path, f"expected a size <= {MAX_SIZE} (2^20), got {value}"))
    return found


def rate_in_hz(path: str, value: Any) -> list[Problem]:
    """A sample rate in Hz: above 0 and up to 2^20 (1e12 Hz leaves every mel band without an FFT bin)."""
    if _finite(value) and 0 < value <= MAX_SIZE:
        return []
    return [(path, f"expected a sample rate in Hz above 0 and at most {MAX_SIZE} (2^20), got {value!r}")]


def empty_mel_bands(sample_rate: float, fft_size: int, n_mels: int) -> int:
    """How many of librosa's Slaney mel filters (auraloss's) hold no FFT bin: distill_core.dsp.mel builds the same
    filterbank without librosa, so a config is checked where librosa is not installed."""
    return int((mel_filterbank(sample_rate, fft_size, n_mels).max(axis=1) == 0).sum())


def mel_bins(bins_field: str, bins: int, rate: float, fft_sizes: Iterable[int]) -> list[Problem]:
    """``bins`` mel bands against every FFT size: a bounded filterbank, and no band without an FFT bin (auraloss
    takes log(0) there and returns NaN)."""
    for fft in sorted(set(fft_sizes)):
        if bins * (fft // 2 + 1) > MAX_FILTERBANK:
            return [
                (
                    bins_field,
                    f"{bins_field} {bins} at fft size {fft} asks for a {bins} x {fft // 2 + 1} "
                    f"filterbank; expected {bins_field} * (fft // 2 + 1) <= {MAX_FILTERBANK} (2^26)",
                )
            ]
    for fft in sorted(set(fft_sizes)):
        empty = empty_mel_bands(rate, fft, bins)
        if empty:
            return [
                (
                    bins_field,
                    f"{bins_field} = {bins} at sample_rate = {rate:g} leaves {empty} of {bins} mel "
                    f"bands without any FFT bin at fft size {fft} (auraloss would take log(0) there "
                    f"and return NaN); expected a smaller {bins_field} or a larger fft size",
                )
            ]
    return []


def reduction(value: str) -> list[Problem]:
    """auraloss's reduction 'none' returns one loss per example; a term returns one 0-dim loss."""
    if value == "none":
        return [
            (
                "reduction",
                "'none' makes auraloss return a loss per example and channel, but a distill "
                "term returns one 0-dim loss; expected 'mean' or 'sum'",
            )
        ]
    return []


def output(value: str) -> list[Problem]:
    """auraloss's output 'full' returns a tuple of components; a term returns one 0-dim loss."""
    if value == "full":
        return [
            (
                "output",
                "'full' makes auraloss return a tuple (loss and its components), but a distill "
                "term returns one 0-dim loss; expected 'loss' (configure the components as "
                "separate terms to log them)",
            )
        ]
    return []


def resolutions(fft: Any, hop: Any, win: Any, index: int | None = None) -> list[Problem]:
    """One STFT resolution: positive sizes with hop <= win <= fft (torch.stft needs win <= fft)."""
    at = "" if index is None else f"[{index}]"
    names = ("fft_size", "hop_size", "win_length") if index is None else ("fft_sizes", "hop_sizes", "win_lengths")
    problems = [p for name, v in zip(names, (fft, hop, win)) for p in size(name + at, v)]
    if problems:
        return problems
    if hop > win:
        problems.append((f"{names[1]}{at}", f"hop {hop} exceeds {names[2]}{at}={win}; expected hop <= win"))
    if win > fft:
        problems.append((f"{names[2]}{at}", f"window {win} exceeds {names[0]}{at}={fft}; expected win <= fft"))
    return problems


def resolution_lists(
    fft_sizes: tuple[int, ...], hop_sizes: tuple[int, ...], win_lengths: tuple[int, ...]
) -> list[Problem]:
    """Equal-length, non-empty lists of resolutions, each one valid."""
    lists = {"fft_sizes": fft_sizes, "hop_sizes": hop_sizes, "win_lengths": win_lengths}
    empty = [(k, "expected at least one resolution") for k, v in lists.items() if len(v) == 0]
    if empty:
        return empty
    if len({len(v) for v in lists.values()}) > 1:
        sizes = ", ".join(f"{k} has {len(v)}" for k, v in lists.items())
        return [
            (
                "hop_sizes" if len(hop_sizes) != len(fft_sizes) else "win_lengths",
                f"expected one entry per resolution in fft_sizes, hop_sizes and win_lengths; {sizes}",
            )
        ]
    return [p for i, r in enumerate(zip(fft_sizes, hop_sizes, win_lengths)) for p in resolutions(*r, index=i)]


def spectral(
    config: Any, fft_sizes: Iterable[int], *, fixed_scale: str | None = None, bins_field: str = "n_bins"
) -> list[Problem]:
    """The options every auraloss STFTLoss takes: weights, eps, output, reduction, scaling, A-weighting.

    ``fixed_scale`` is the scale a class implies (MelSTFTLoss, ChromaSTFTLoss); their ``sample_rate`` has no
    default in auraloss, and a config file must give it (configs.require_in_files).
    """
    problems: list[Problem] = []
    for key in ("w_sc", "w_log_mag", "w_lin_mag", "w_phs"):
        problems += at_least_zero(key, getattr(config, key))
    problems += positive("eps", config.eps, " (magnitudes are clamped at eps before a log)")
    problems += output(config.output) + reduction(config.reduction)
    if config.scale_invariance:
        problems.append(
            (
                "scale_invariance",
                "auraloss 0.4 scales the target by alpha.unsqueeze(-1), which "
                "lines the per-signal scales up with the frequency axis: an error "
                "for most batch shapes and a wrong loss when batch * channels "
                "equals the number of bins; expected false",
            )
        )
    rate_problems = [] if config.sample_rate is None else rate_in_hz("sample_rate", config.sample_rate)
    problems += rate_problems
    if config.sample_rate is None and config.perceptual_weighting:
        problems.append(
            (
                "sample_rate",
                "perceptual_weighting = true designs an A-weighting filter for a sample rate; expected a sample_rate",
            )
        )
    scale = fixed_scale or config.scale
    if scale is None:
        return problems
    if fixed_scale is None and config.sample_rate is None and not config.perceptual_weighting:
        problems.append(
            ("sample_rate", f"scale = {scale!r} builds a filterbank for a sample rate; expected a sample_rate")
        )
    bins = getattr(config, bins_field)
    if bins is None:
        return problems + [
            (bins_field, f"scale = {scale!r} needs the number of {scale} bins; expected a positive integer")
        ]
    found = positive_int(bins_field, bins)
    if found:
        return problems + found
    too_small = [f for f in fft_sizes if isinstance(f, int) and bins > f]
    if too_small:
        problems.append(
            (
                bins_field,
                f"{bins_field} {bins} exceeds the FFT size {min(too_small)}; auraloss expects {bins_field} <= fft size",
            )
        )
    elif scale == "mel" and config.sample_rate is not None and not rate_problems:
        problems += mel_bins(bins_field, bins, config.sample_rate, fft_sizes)
    return problems
