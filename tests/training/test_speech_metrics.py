"""compare's speech metrics (PESQ, STOI, ESTOI) against the pesq and pystoi packages called directly, on the
alsa-utils voice recordings and on noise; and that they are offered only when their packages are installed."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly

from distill_core.training import speech_metrics
from distill_core.training.audio import read_wav
from distill_core.training.audio_metrics import METRICS, evaluate

pesq_package = pytest.importorskip(
    "pesq", reason="the [metrics] extra is not installed (pip install 'distill-core[metrics]')"
)
pystoi = pytest.importorskip("pystoi", reason="the [metrics] extra is not installed")

ALSA = Path("/usr/share/sounds/alsa")
VOICES = sorted(p for p in ALSA.glob("*.wav") if p.name != "Noise.wav") if ALSA.is_dir() else []
needs_alsa = pytest.mark.skipif(
    not VOICES,
    reason="alsa-utils is not installed (apt-get install alsa-utils puts voice recordings in /usr/share/sounds/alsa)",
)


def noisy(clean: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.shape)
    return clean + noise * np.linalg.norm(clean) / np.linalg.norm(noise) * 10 ** (-snr_db / 20)


def speech_pairs(rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[4, N] clean voice clips (three alsa recordings, resampled from 48 kHz by scipy) and noisy copies at
    20, 10, 0 and -5 dB SNR; the first clip twice."""
    voices = [read_wav(p)[0] for p in VOICES[:3]]
    n = min(len(v) for v in voices)
    clean = np.stack([resample_poly(v[:n].astype(np.float64), rate // 1000, 48) for v in voices + voices[:1]])
    estimate = np.stack([noisy(c, snr, i) for i, (c, snr) in enumerate(zip(clean, (20.0, 10.0, 0.0, -5.0)))])
    return torch.from_numpy(clean), torch.from_numpy(estimate)


@needs_alsa
def test_pesq_wide_band_equals_the_pesq_package_at_16khz():
    clean, estimate = speech_pairs(16_000)
    ours = METRICS["PESQ WB"][0](clean, estimate, 16_000)
    direct = [pesq_package.pesq(16_000, c.numpy(), e.numpy(), "wb") for c, e in zip(clean, estimate)]
    assert ours.tolist() == direct
    assert direct[0] > direct[1] > direct[2]  # more noise, lower quality: the clips are real speech


@needs_alsa
def test_pesq_narrow_band_equals_the_pesq_package_at_8khz():
    clean, estimate = speech_pairs(8_000)
    ours = METRICS["PESQ NB"][0](clean, estimate, 8_000)
    direct = [pesq_package.pesq(8_000, c.numpy(), e.numpy(), "nb") for c, e in zip(clean, estimate)]
    assert ours.tolist() == direct
    assert math.isnan(float(METRICS["PESQ WB"][0](clean, estimate, 8_000)[0]))  # no wide band at 8 kHz


@needs_alsa
def test_pesq_narrow_band_of_16khz_clips_scores_them_at_8khz():
    """Clips at 16 kHz are resampled to 8 kHz (the compare resampler, FFT-based) and scored narrow band: the
    same as pesq on scipy's polyphase 8 kHz copy, to the resamplers' difference."""
    clean, estimate = speech_pairs(16_000)
    ours = METRICS["PESQ NB"][0](clean, estimate, 16_000)
    direct = [
        pesq_package.pesq(8_000, resample_poly(c.numpy(), 1, 2), resample_poly(e.numpy(), 1, 2), "nb")
        for c, e in zip(clean, estimate)
    ]
    np.testing.assert_allclose(ours.numpy(), direct, atol=0.05)


@needs_alsa
@pytest.mark.parametrize("rate", [16_000, 8_000])
def test_stoi_and_estoi_equal_pystoi(rate):
    clean, estimate = speech_pairs(rate)
    for name, extended in (("STOI", False), ("ESTOI", True)):
        ours = METRICS[name][0](clean, estimate, rate)
        direct = [pystoi.stoi(c.numpy(), e.numpy(), rate, extended=extended) for c, e in zip(clean, estimate)]
        np.testing.assert_allclose(ours.numpy(), direct, rtol=0, atol=1e-12)  # ESTOI: pystoi adds 1e-16 noise
        assert direct[0] > direct[1] > direct[2] > direct[3]


def test_on_noise_equal_the_packages_and_unscorable_clips_are_nan():
    g = np.random.default_rng(0)
    clean = 0.2 * g.standard_normal((2, 16_000))
    estimate = clean + 0.1 * g.standard_normal((2, 16_000))
    estimate[1] = 0.0  # a silent reconstruction: pesq 0.0.4 fails on it
    c, e = torch.from_numpy(clean), torch.from_numpy(estimate)
    assert float(METRICS["STOI"][0](c, e, 16_000)[0]) == pystoi.stoi(clean[0], estimate[0], 16_000)
    wb = METRICS["PESQ WB"][0](c, e, 16_000)
    assert float(wb[0]) == pesq_package.pesq(16_000, clean[0], estimate[0], "wb") and math.isnan(float(wb[1]))
    short = torch.from_numpy(clean[:, :3_000])  # 30 frames of pystoi need 0.4 s; PESQ a quarter second
    assert math.isnan(float(METRICS["STOI"][0](short, short, 16_000)[0]))
    assert math.isnan(float(METRICS["PESQ WB"][0](short, short, 16_000)[0]))


def test_evaluate_reports_them_beside_the_other_metrics():
    g = torch.Generator().manual_seed(0)
    clean = 0.2 * torch.randn(2, 16_000, generator=g)
    scores = evaluate(clean, clean + 0.05 * torch.randn(2, 16_000, generator=g), 16_000)
    assert list(scores)[-4:] == ["PESQ WB", "PESQ NB", "STOI", "ESTOI"]
    assert all(len(v) == 2 and all(math.isfinite(x) for x in v) for v in scores.values())


def test_offered_only_when_their_packages_are_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pesq" else real(name, *a))
    assert list(speech_metrics.installed()) == ["STOI", "ESTOI"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert speech_metrics.installed() == {}
