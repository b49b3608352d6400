"""The mel term's config: DAC's MelSpectrogramLoss options, named as DAC names them, DAC's training defaults."""

from __future__ import annotations

import math
from typing import Literal

import attrs

from distill_core import InvalidConfig, Weight

Problems = list[tuple[str, str]]

MAX_SIZE = 2**20
"""Largest window (FFT size) and sample rate accepted, as the stft term's: bigger ones are typos that would
allocate gigabytes (a window of 2^30 samples is 8.6 GB in float64)."""
MAX_FILTERBANK = 2**26
"""Largest mel filterbank (n_mels * (window // 2 + 1) entries, 256 MiB in float32) a scale may ask for."""


def sample_rate_problems(rate: int) -> Problems:
    """A sample rate in Hz from 1 to 2^20: beyond that the filters are typos (1e20 Hz puts every band above
    the FFT bins, and the loss is silently 0)."""
    if not 0 < rate <= MAX_SIZE:
        return [("sample_rate", f"expected a sample rate in Hz from 1 to {MAX_SIZE} (2^20), got {rate}")]
    return []


def bands_against_fft(n_mels: int, fft: int, fft_name: str) -> list[str]:
    """Why ``n_mels`` bands do not fit an FFT of ``fft`` samples (empty when they do)."""
    if n_mels > fft:
        return [f"expected at most {fft_name}={fft} mel bands (the FFT size), got {n_mels}"]
    if n_mels * (fft // 2 + 1) > MAX_FILTERBANK:
        return [
            f"{n_mels} bands at {fft_name}={fft} ask for a {n_mels} x {fft // 2 + 1} filterbank; expected "
            f"n_mels * (fft // 2 + 1) <= {MAX_FILTERBANK} (2^26)"
        ]
    return []


@attrs.define
class MelConfig:
    """Multi-scale log-mel L1 settings; the defaults are DAC's conf/base.yml (44.1 kHz, seven scales).

    ``mel_fmin`` / ``mel_fmax`` left out mean 0 Hz / sample_rate / 2 at every scale (DAC's lists of 0 and
    null); given, they hold one number per scale.
    """

    weight: Weight = 1.0
    preset: Literal["dac"] = "dac"
    n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    window_lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    mel_fmin: tuple[float, ...] | None = None
    mel_fmax: tuple[float, ...] | None = None
    clamp_eps: float = 1e-5
    pow: float = 1.0
    log_weight: float = 1.0
    mag_weight: float = 0.0
    sample_rate: int = 44100

    def __attrs_post_init__(self) -> None:
        problems = self._scale_problems() + self._number_problems()
        if not problems:
            problems = self._band_problems()
        if problems:
            raise InvalidConfig(problems)

    @property
    def fmins(self) -> tuple[float, ...]:
        """The lowest filter edge of every scale, in Hz."""
        return self.mel_fmin if self.mel_fmin is not None else (0.0,) * len(self.window_lengths)

    @property
    def fmaxs(self) -> tuple[float, ...]:
        """The highest filter edge of every scale, in Hz."""
        return self.mel_fmax if self.mel_fmax is not None else (self.sample_rate / 2.0,) * len(self.window_lengths)

    def _scale_problems(self) -> Problems:
        problems: Problems = []
        lists: dict[str, tuple[float, ...]] = {"n_mels": self.n_mels, "window_lengths": self.window_lengths}
        lists.update({k: v for k, v in (("mel_fmin", self.mel_fmin), ("mel_fmax", self.mel_fmax)) if v is not None})
        lengths = {k: len(v) for k, v in lists.items()}
        if 0 in lengths.values():
            problems += [(k, "expected at least one scale") for k, n in lengths.items() if n == 0]
        elif len(set(lengths.values())) > 1:
            first = next(k for k, n in lengths.items() if n != lengths["window_lengths"])
            problems.append(
                (first, "expected one entry per scale: " + ", ".join(f"{k} has {n}" for k, n in lengths.items()))
            )
        for i, w in enumerate(self.window_lengths):
            if w < 4:
                problems.append(
                    (
                        f"window_lengths[{i}]",
                        f"expected a window of at least 4 samples (hop = window // 4 >= 1), got {w}",
                    )
                )
            elif w > MAX_SIZE:
                problems.append(
                    (f"window_lengths[{i}]", f"expected a window of at most {MAX_SIZE} samples (2^20), got {w}")
                )
        for i, m in enumerate(self.n_mels):
            if m < 1:
                problems.append((f"n_mels[{i}]", f"expected at least 1 mel band, got {m}"))
        if not problems:
            problems += [
                (f"n_mels[{i}]", reason)
                for i, (m, w) in enumerate(zip(self.n_mels, self.window_lengths))
                for reason in bands_against_fft(m, w, f"window_lengths[{i}]")
            ]
        return problems

    def _number_problems(self) -> Problems:
        problems: Problems = []
        for key in ("clamp_eps", "pow"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                problems.append((key, f"expected a finite number > 0, got {v!r}"))
        for key in ("log_weight", "mag_weight"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0):
                problems.append((key, f"expected a finite number >= 0, got {v!r}"))
        problems += sample_rate_problems(self.sample_rate)
        return problems

    def _band_problems(self) -> Problems:
        problems: Problems = []
        nyquist = self.sample_rate / 2.0
        for i, (lo, hi) in enumerate(zip(self.fmins, self.fmaxs)):
            if not (math.isfinite(lo) and lo >= 0):
                problems.append((f"mel_fmin[{i}]", f"expected a frequency >= 0 Hz, got {lo!r}"))
            elif not (lo < hi <= nyquist):
                problems.append(
                    (
                        f"mel_fmax[{i}]",
                        f"expected mel_fmin[{i}]={lo!r} < mel_fmax <= sample_rate / 2 = {nyquist!r}, got {hi!r}",
                    )
                )
        return problems


@attrs.define
class AudiocraftConfig:
    """audiocraft's MultiScaleMelSpectrogramLoss (``msspec``) arguments, named as audiocraft names them.

    The defaults are the ``msspec`` section of audiocraft 1.3.0's config/solver/compression/default.yaml (f_min
    64, normalized, no alphas), which audiocraft trains its compression models with (at weight 2); the
    class's own defaults are ``f_min = 0``, ``normalized = false``, ``alphas = true``. audiocraft requires a
    sample rate; 24000 is its EnCodec's (encodec_base_24khz). ``f_max`` left out is ``sample_rate // 2``.
    """

    weight: Weight = 1.0
    sample_rate: int = 24000
    range_start: int = 6
    range_end: int = 11
    n_mels: int = 64
    f_min: float = 64.0
    f_max: float | None = None
    normalized: bool = True
    alphas: bool = False
    floor_level: float = 1e-5

    def __attrs_post_init__(self) -> None:
        problems = sample_rate_problems(self.sample_rate) + self._range_problems()
        if not (math.isfinite(self.floor_level) and self.floor_level > 0):
            problems.append(
                (
                    "floor_level",
                    f"expected a finite number > 0 (added to the mels before log10), got {self.floor_level!r}",
                )
            )
        if self.n_mels < 1:
            problems.append(("n_mels", f"expected at least 1 mel band, got {self.n_mels}"))
        elif not problems:
            problems += [
                ("n_mels", r)
                for i in range(self.range_start, self.range_end)
                for r in bands_against_fft(self.n_mels, 2**i, f"2^{i}")
            ][:1]
        if not problems:
            problems += self._band_problems()
        if problems:
            raise InvalidConfig(problems)

    @property
    def window_lengths(self) -> tuple[int, ...]:
        """The FFT size (= window length) of every scale: 2^i for range_start <= i < range_end."""
        return tuple(2**i for i in range(self.range_start, self.range_end))

    @property
    def fmax(self) -> float:
        """The highest filter edge in Hz: torchaudio's default is sample_rate // 2."""
        return float(self.sample_rate // 2) if self.f_max is None else self.f_max

    def _range_problems(self) -> Problems:
        largest = MAX_SIZE.bit_length() - 1
        if not 2 <= self.range_start <= largest:
            return [
                (
                    "range_start",
                    f"expected 2 <= range_start <= {largest} (windows of 2^range_start samples, "
                    f"from 4 to 2^{largest}), got {self.range_start}",
                )
            ]
        if not self.range_start < self.range_end <= largest + 1:
            return [
                (
                    "range_end",
                    f"expected range_start={self.range_start} < range_end <= {largest + 1} (the "
                    f"scales are 2^range_start ... 2^(range_end - 1)), got {self.range_end}",
                )
            ]
        return []

    def _band_problems(self) -> Problems:
        nyquist = self.sample_rate / 2.0
        if not (math.isfinite(self.f_min) and self.f_min >= 0):
            return [("f_min", f"expected a frequency >= 0 Hz, got {self.f_min!r}")]
        if not self.f_min < self.fmax <= nyquist:
            return [
                (
                    "f_max" if self.f_max is not None else "f_min",
                    f"expected f_min={self.f_min!r} < f_max={self.fmax!r} <= sample_rate / 2 = {nyquist!r}",
                )
            ]
        return []
