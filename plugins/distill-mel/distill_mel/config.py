"""The mel term's config: DAC's MelSpectrogramLoss options, named as DAC names them, DAC's training defaults."""

from __future__ import annotations

import math
from typing import Literal

import attrs
from distill_core import InvalidConfig, Weight

Problems = list[tuple[str, str]]


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
        lists = {"n_mels": self.n_mels, "window_lengths": self.window_lengths}
        lists.update({k: v for k, v in (("mel_fmin", self.mel_fmin), ("mel_fmax", self.mel_fmax)) if v is not None})
        lengths = {k: len(v) for k, v in lists.items()}
        if 0 in lengths.values():
            problems += [(k, "expected at least one scale") for k, n in lengths.items() if n == 0]
        elif len(set(lengths.values())) > 1:
            first = next(k for k, n in lengths.items() if n != lengths["window_lengths"])
            problems.append((first, "expected one entry per scale: " + ", ".join(f"{k} has {n}" for k, n in
                                                                                 lengths.items())))
        for i, w in enumerate(self.window_lengths):
            if w < 4:
                problems.append((f"window_lengths[{i}]", f"expected a window of at least 4 samples (hop = "
                                                         f"window // 4 >= 1), got {w}"))
        for i, m in enumerate(self.n_mels):
            if m < 1:
                problems.append((f"n_mels[{i}]", f"expected at least 1 mel band, got {m}"))
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
        if self.sample_rate <= 0:
            problems.append(("sample_rate", f"expected a positive sample rate in Hz, got {self.sample_rate}"))
        return problems

    def _band_problems(self) -> Problems:
        problems: Problems = []
        nyquist = self.sample_rate / 2.0
        for i, (lo, hi) in enumerate(zip(self.fmins, self.fmaxs)):
            if not (math.isfinite(lo) and lo >= 0):
                problems.append((f"mel_fmin[{i}]", f"expected a frequency >= 0 Hz, got {lo!r}"))
            elif not (lo < hi <= nyquist):
                problems.append((f"mel_fmax[{i}]", f"expected mel_fmin[{i}]={lo!r} < mel_fmax <= sample_rate / 2 "
                                                   f"= {nyquist!r}, got {hi!r}"))
        return problems
