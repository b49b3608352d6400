"""The stoi and estoi terms' configs: the input's sample rate and the measures' published constants."""

from __future__ import annotations

import math

import attrs

from distill_core import InvalidConfig, Weight

from .resample import resampling_taps

Problems = list[tuple[str, str]]
MAX_RESAMPLING_TAPS = 1_000_000  # a rate whose ratio to 10 kHz reduces to larger terms needs a huge filter
MIN_RATE, MAX_RATE = 1_000, 384_000  # Hz: below, no speech band is left; above, no audio interface records
# the rate a user meant by a whole number of kHz, where the usual rate is not that number times 1000
KHZ_RATES = {11: 11_025, 22: 22_050, 44: 44_100, 88: 88_200, 176: 176_400, 352: 352_800}


def _khz_hint(sample_rate: int) -> str:
    """A note for a rate that reads as kHz typed for Hz (" (16 looks like kHz: 16000?)"), else nothing."""
    if not 0 < sample_rate < MIN_RATE or not MIN_RATE <= sample_rate * 1000 <= MAX_RATE:
        return ""
    meant = KHZ_RATES.get(sample_rate, sample_rate * 1000)
    return f" ({sample_rate} looks like kHz: {meant}?)"


def _rate_problems(sample_rate: int) -> Problems:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
        return [("sample_rate", f"expected a whole number of Hz, got {sample_rate!r}")]
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        return [
            (
                "sample_rate",
                f"expected a sample rate in Hz between {MIN_RATE} and {MAX_RATE}{_khz_hint(sample_rate)}, "
                f"got {sample_rate}",
            )
        ]
    taps = resampling_taps(sample_rate, 10_000)
    if taps > MAX_RESAMPLING_TAPS:
        return [
            (
                "sample_rate",
                f"resampling {sample_rate} Hz to 10000 Hz needs a filter of {taps} taps (the "
                f"ratio does not reduce to small terms); expected a rate such as 8000, 16000, 22050, "
                f"24000, 44100 or 48000 (at most {MAX_RESAMPLING_TAPS} taps)",
            )
        ]
    return []


def _dyn_range_problems(dyn_range: float) -> Problems:
    if not (math.isfinite(dyn_range) and dyn_range > 0):
        return [("dyn_range", f"expected a finite number of dB > 0, got {dyn_range!r}")]
    return []


@attrs.define
class ESTOIConfig:
    """Extended STOI (Jensen & Taal 2016) as a loss, 1 - ESTOI; defaults are the published constants.

    ``sample_rate`` is the rate of recon and target (resampled to 10 kHz inside); frames more than
    ``dyn_range`` dB below the target's loudest frame are left out.
    """

    weight: Weight = 1.0
    sample_rate: int = 16_000
    dyn_range: float = 40.0

    def __attrs_post_init__(self) -> None:
        problems = _rate_problems(self.sample_rate) + _dyn_range_problems(self.dyn_range)
        if problems:
            raise InvalidConfig(problems)


@attrs.define
class STOIConfig:
    """STOI (Taal et al. 2011) as a loss, 1 - STOI; defaults are the published constants.

    As ESTOIConfig, plus ``beta``: the lower bound of the signal-to-distortion ratio, in dB, at which the
    scaled recon envelope is clipped to (1 + 10^(-beta / 20)) times the target's.
    """

    weight: Weight = 1.0
    sample_rate: int = 16_000
    dyn_range: float = 40.0
    beta: float = -15.0

    def __attrs_post_init__(self) -> None:
        problems = _rate_problems(self.sample_rate) + _dyn_range_problems(self.dyn_range)
        if not (math.isfinite(self.beta) and -100.0 <= self.beta <= 100.0):
            problems.append(("beta", f"expected a finite number of dB in [-100, 100], got {self.beta!r}"))
        if problems:
            raise InvalidConfig(problems)
