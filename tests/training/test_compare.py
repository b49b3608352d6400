"""distill-loss compare: the metrics against their definitions and auraloss, and two real runs compared on
synthetic WAVs and on the voice recordings of the Debian package alsa-utils (when installed)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import wave
from pathlib import Path

import auraloss
import numpy as np
import pytest
import torch

from distill_core.training.audio_metrics import (
    METRICS,
    log_spectral_distance,
    mel_distance,
    multi_resolution_stft_distance,
    si_sdr,
    spectral_convergence,
)
from distill_core.training.compare import REFERENCE, _spectrogram_of
from distill_core.training.model import SpectrogramVAE
from distill_core.training.run import DemoSettings, run_demo
from distill_core.training.spectrogram import SpectrogramConfig

ALSA = Path("/usr/share/sounds/alsa")
ALSA_VOICES = sorted(ALSA.glob("*.wav")) if ALSA.is_dir() else []
SPEECH_METRICS = [name for name in ("PESQ WB", "PESQ NB", "STOI", "ESTOI") if name in METRICS]  # [metrics] extra


@pytest.fixture
def signals():
    g = torch.Generator().manual_seed(0)
    reference = 0.3 * torch.randn(3, 8000, generator=g)
    estimate = reference + 0.1 * torch.randn(3, 8000, generator=g)
    return reference, estimate


def test_si_sdr_is_the_negative_of_auraloss_sisdr(signals):
    reference, estimate = signals
    ours = si_sdr(reference, estimate)
    oracle = torch.stack(
        [-auraloss.time.SISDRLoss()(e[None, None], r[None, None]) for r, e in zip(reference, estimate)]
    )
    torch.testing.assert_close(ours, oracle, rtol=1e-4, atol=1e-4)
    assert si_sdr(reference, 0.5 * reference).min() > 60  # scale-invariant: a gain is no distortion


def test_spectral_convergence_matches_auraloss(signals):
    reference, estimate = signals
    window = torch.hann_window(1024)
    mag = [torch.stft(x, 1024, 256, window=window, return_complex=True).abs() for x in (reference, estimate)]
    oracle = torch.stack([auraloss.freq.SpectralConvergenceLoss()(e[None], r[None]) for r, e in zip(*mag)])
    torch.testing.assert_close(spectral_convergence(reference, estimate), oracle, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gain", [0.5, 2.0, 10.0])
def test_a_gain_moves_lsd_and_mel_distance_by_its_log(signals, gain):
    reference, _ = signals
    # the power spectrum scales by gain^2 in every bin: LSD = |20 log10 gain| dB, log-mel L1 = |ln gain|
    torch.testing.assert_close(
        log_spectral_distance(reference, gain * reference),
        torch.full((3,), abs(20 * math.log10(gain))),
        rtol=1e-4,
        atol=1e-4,
    )
    torch.testing.assert_close(
        mel_distance(reference, gain * reference, 16000), torch.full((3,), abs(math.log(gain))), rtol=1e-4, atol=1e-4
    )


def test_identical_signals_score_perfectly(signals):
    reference, estimate = signals
    for fn in (log_spectral_distance, multi_resolution_stft_distance, spectral_convergence):
        assert fn(reference, reference).abs().max() < 1e-5
        assert fn(reference, estimate).min() > 1e-3
    assert mel_distance(reference, reference, 16000).abs().max() < 1e-6
    torch.testing.assert_close(
        multi_resolution_stft_distance(reference[:1], estimate[:1]),
        auraloss.freq.MultiResolutionSTFTLoss()(estimate[:1, None], reference[:1, None])[None],
    )


def test_runs_without_spectrogram_json_infer_the_mel_bins(tmp_path):
    for mel in (None, 64, 128):
        cfg = SpectrogramConfig(mel_bins=mel)
        state = SpectrogramVAE(cfg.bins, cfg.frames).state_dict()
        assert _spectrogram_of(tmp_path, state) == cfg


def write_wav(path: Path, data: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(data, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two one-epoch demo runs on the synthetic corpus: the default recipe, and one without the KL term."""
    root = tmp_path_factory.mktemp("runs")
    no_kl = root / "no_kl.toml"
    no_kl.write_text("[terms.kl]\nweight = 0.0\n")
    runs = []
    for name, config in (("recipe", None), ("no_kl", no_kl)):
        settings = DemoSettings(name=name, out=root, epochs=1, clips=12, batch_size=4, config=config, seed=1)
        runs.append(run_demo(settings, progress=False))
    return runs


@pytest.fixture
def held_out(tmp_path):
    folder = tmp_path / "held_out"
    folder.mkdir()
    t = np.arange(2 * 22050) / 22050  # 2 s: three 0.5 s clips each at 16 kHz
    write_wav(folder / "tone.wav", 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1320 * t), 22050)
    write_wav(folder / "chirp.wav", 0.4 * np.sin(2 * np.pi * (200 + 750 * t) * t), 22050)
    return folder


def cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def table(md: str) -> dict[str, list[float]]:
    """The metric rows of compare.md: run label -> the means, one per metric (NaN for n/a)."""
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 1 + len(METRICS) and "±" in cells[1]:
            rows[cells[0]] = [math.nan if c == "n/a" else float(c.split("±")[0]) for c in cells[1:]]
    return rows


def check_report(out: Path, runs: list[Path]) -> dict[str, list[float]]:
    md = (out / "compare.md").read_text()
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = next(line for line in md.splitlines() if line.startswith("| run | LSD"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "run",
        "LSD (dB) ↓",
        "MR-STFT ↓",
        "mel L1 ↓",
        "SI-SDR (dB) ↑",
        "spectral convergence ↓",
        *(f"{name} ↑" for name in SPEECH_METRICS),
    ]
    rows = table(md)
    assert list(rows) == [REFERENCE, *(r.name for r in runs)]
    lsd, mr, mel, sdr, sc = rows[REFERENCE][:5]
    # the linear spectrogram inverts exactly: float32 error only (LSD feels it in near-silent bins of speech)
    assert lsd < 1.0 and sc < 0.01 and sdr > 30
    for name in (r.name for r in runs):
        assert rows[name][0] > lsd and rows[name][4] > sc and rows[name][3] < sdr
        assert all(math.isfinite(v) for v in rows[name][:5])
    summary = (
        r"\| recipe \| `.*recipe` \| 1 \| 1 \| [0-9.]+ \| "
        r"stft \(1\.0\), mag_recon .*kl \(linear_warmup max=0\.01 "
    )
    assert re.search(summary, md)
    return rows


@pytest.mark.slow
@pytest.mark.e2e
def test_compare_two_runs_on_synthetic_wavs(two_runs, held_out, tmp_path):
    out = tmp_path / "report"
    r = cli("compare", *map(str, two_runs), "--data", str(held_out), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = check_report(out, two_runs)
    assert "# Reconstruction of 6 held-out clips of 0.50 s" in (out / "compare.md").read_text()
    assert rows["recipe"] != rows["no_kl"]

    again = cli("compare", *map(str, two_runs), "--data", str(held_out), "--out", str(out), cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: {out / 'compare.md'} and {out / 'compare.png'} already exist; choose another --out or pass "
        "--force to replace"
    ]
    forced = cli("compare", *map(str, two_runs), "--data", str(held_out), "--out", str(out), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(
    not ALSA_VOICES,
    reason="alsa-utils is not installed (apt-get install alsa-utils puts voice recordings in /usr/share/sounds/alsa)",
)
def test_compare_on_the_alsa_utils_voice_recordings(two_runs, tmp_path):
    out = tmp_path / "alsa"
    r = cli("compare", *map(str, two_runs), "--data", str(ALSA), "--clips", "12", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = check_report(out, two_runs)
    assert "# Reconstruction of 12 held-out clips" in (out / "compare.md").read_text()
    # speech: the near-exact round trip scores at the top of PESQ and STOI, the 1-epoch demo VAEs far below
    ceiling = {"PESQ WB": 4.5, "PESQ NB": 4.4, "STOI": 0.99, "ESTOI": 0.99}
    for i, name in enumerate(SPEECH_METRICS, start=5):
        assert rows[REFERENCE][i] > ceiling[name], (name, rows[REFERENCE][i])
        assert all(rows[run.name][i] < ceiling[name] - 0.5 for run in two_runs), name


@pytest.mark.slow
@pytest.mark.e2e
def test_compare_refuses_bad_runs_in_one_line(two_runs, held_out, tmp_path):
    r = cli("compare", str(tmp_path / "nowhere"), "--data", str(held_out), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2 and "nowhere: no such run folder" in r.stderr
    empty = tmp_path / "empty_run"
    empty.mkdir()
    r = cli("compare", str(empty), "--data", str(held_out), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {empty / 'best.pt'}: no such checkpoint file"
    ]
    assert not (tmp_path / "o").exists()
