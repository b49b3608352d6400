"""Real speech for the parity tests: Debian's alsa-utils voice recordings and espeak-ng's synthesis."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from distill_core.training.audio import read_wav

ALSA = Path("/usr/share/sounds/alsa")
ALSA_VOICES = sorted(p for p in ALSA.glob("*.wav") if p.name != "Noise.wav") if ALSA.is_dir() else []
SENTENCE = "The quick brown fox jumps over the lazy dog, and then it rests in the shade of an old oak tree."


def at_rate(x: np.ndarray, rate: int, wanted: int) -> np.ndarray:
    """x resampled from ``rate`` to ``wanted`` (scipy's polyphase resampler), float64."""
    from math import gcd

    g = gcd(rate, wanted)
    return resample_poly(x.astype(np.float64), wanted // g, rate // g)


@pytest.fixture(scope="session")
def alsa_speech() -> list[np.ndarray]:
    """Three of the alsa-utils voice recordings (48 kHz) at 16 kHz."""
    if not ALSA_VOICES:
        pytest.skip(
            "alsa-utils is not installed (apt-get install alsa-utils puts voice recordings in /usr/share/sounds/alsa)"
        )
    return [at_rate(*read_wav(p), 16_000) for p in ALSA_VOICES[:3]]


@pytest.fixture(scope="session")
def alsa_voices() -> list[tuple[np.ndarray, int]]:
    """Three of the alsa-utils voice recordings at their own rate (48 kHz), with it."""
    if not ALSA_VOICES:
        pytest.skip(
            "alsa-utils is not installed (apt-get install alsa-utils puts voice recordings in /usr/share/sounds/alsa)"
        )
    return [read_wav(p) for p in ALSA_VOICES[:3]]


@pytest.fixture(scope="session")
def espeak_voice(tmp_path_factory) -> tuple[np.ndarray, int]:
    """A sentence spoken by espeak-ng at its own rate (22050 Hz), with it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path = tmp_path_factory.mktemp("espeak") / "sentence.wav"
    subprocess.run([exe, "-w", str(path), SENTENCE], check=True, capture_output=True)
    return read_wav(path)


@pytest.fixture(scope="session")
def espeak_speech(espeak_voice) -> np.ndarray:
    """The espeak-ng sentence at 16 kHz."""
    return at_rate(*espeak_voice, 16_000)
