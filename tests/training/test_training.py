"""Training end to end on tiny data: loss falls, legacy fallback, resume, spectrogram round trip, demo CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from distill_core import LossConfig, load_config
from distill_core.training.audio import synthetic_corpus
from distill_core.training.loop import train
from distill_core.training.metrics import EpochMetrics, MetricsHistory
from distill_core.training.model import SpectrogramVAE
from distill_core.training.spectrogram import SpectrogramConfig, from_spectrogram, to_spectrogram

SPEC = SpectrogramConfig(sample_rate=8000, n_fft=128, hop=32, frames=32)  # [2, 64, 32]: F*T = 2048


def loaders(seed=0, n=24):
    waves = synthetic_corpus(n, SPEC.samples, SPEC.sample_rate, seed=seed)
    specs = to_spectrogram(waves, SPEC)
    return (
        DataLoader(TensorDataset(specs[4:]), batch_size=8, shuffle=True, generator=None),
        DataLoader(TensorDataset(specs[:4]), batch_size=8),
    )


def model(seed=0):
    torch.manual_seed(seed)
    return SpectrogramVAE(SPEC.bins, SPEC.frames, latent_dim=8, width=8)


@pytest.mark.parametrize("loss_config", [LossConfig, None], ids=["combined", "legacy"])
def test_two_epochs_loss_falls(loss_config):
    train_loader, val_loader = loaders()
    m = model()
    history = train(m, train_loader, val_loader, loss_config() if loss_config else None, epochs=2, lr=3e-3)
    first, second = history.epochs
    assert second.train_loss < first.train_loss
    assert math.isfinite(second.val_loss)
    if loss_config is None:
        assert first.val_stft_loss == 0.0
    else:
        assert first.val_stft_loss > 0 and first.val_mag_recon_loss > 0


def test_step_metrics_are_emitted_at_the_log_interval():
    train_loader, val_loader = loaders()
    seen = []
    train(model(), train_loader, val_loader, LossConfig(), epochs=1, callbacks=[seen.append], log_interval=2)
    steps = [s for s in seen if not isinstance(s, EpochMetrics)]
    assert [s.step for s in steps] == [1, 2]  # 20 clips / 8 = 3 steps: after 2 and at the end (0-based, as the seed)
    assert all(s.stft_loss > 0 and s.kl_weight == 0.01 for s in steps)  # 1 epoch: no warm-up epochs
    assert isinstance(seen[-1], EpochMetrics)


def test_resume_reproduces_the_next_epoch(tmp_path):
    train_loader, val_loader = loaders()
    torch.manual_seed(1)
    full = train(model(), train_loader, val_loader, LossConfig(), epochs=3, checkpoint_dir=tmp_path / "full")

    class Stop(Exception):
        pass

    def stop_after_second(metrics):
        if isinstance(metrics, EpochMetrics) and metrics.epoch == 1:
            raise Stop

    torch.manual_seed(1)
    with pytest.raises(Stop):
        train(
            model(),
            train_loader,
            val_loader,
            LossConfig(),
            epochs=3,
            checkpoint_dir=tmp_path / "cut",
            callbacks=[stop_after_second],
        )
    torch.manual_seed(12345)  # resume must not depend on the caller's RNG
    resumed = train(
        model(seed=99),
        train_loader,
        val_loader,
        LossConfig(),
        epochs=3,
        checkpoint_dir=tmp_path / "cut",
        resume_from=tmp_path / "cut" / "last.pt",
    )
    assert len(resumed.epochs) == 3
    assert resumed.epochs[2].train_loss == pytest.approx(full.epochs[2].train_loss, rel=1e-6)
    assert resumed.epochs[2].val_loss == pytest.approx(full.epochs[2].val_loss, rel=1e-6)
    assert MetricsHistory.load(tmp_path / "cut" / "history.json").epochs[2].val_loss == resumed.epochs[2].val_loss


def test_checkpoint_holds_config_and_provenance(tmp_path):
    train_loader, val_loader = loaders()
    train(model(), train_loader, val_loader, LossConfig(), epochs=1, checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert load_config(state["config"]) == LossConfig()
    assert state["provenance"]["stft"]["distribution"] == "distill-stft"
    assert state["provenance"]["kl"]["config"]["free_bits"] == 0.1


def test_spectrogram_round_trip_of_a_sine():
    t = torch.arange(SpectrogramConfig().samples) / 16000
    x = (0.5 * torch.sin(2 * math.pi * 440.0 * t))[None]
    spec = to_spectrogram(x, SpectrogramConfig())
    assert spec.shape == (1, 2, 256, 64)
    assert spec[:, 0].min() >= 0 and spec[:, 1].abs().max() <= 1
    y = from_spectrogram(spec, SpectrogramConfig())
    assert float((y - x).norm() / x.norm()) < 1e-4  # stated bound: relative L2 error below 1e-4


def test_mel_spectrogram_round_trip():
    cfg = SpectrogramConfig(mel_bins=128)
    t = torch.arange(cfg.samples) / cfg.sample_rate
    x = (0.5 * torch.sin(2 * math.pi * 440.0 * t) + 0.2 * torch.sin(2 * math.pi * 1230.0 * t))[None]
    spec = to_spectrogram(x, cfg)
    assert spec.shape == (1, 2, 128, 64)
    assert spec[:, 0].min() >= 0 and spec[:, 1].abs().max() <= 1
    y = from_spectrogram(spec, cfg)
    # Approximate by design (pseudo-inverse of the filterbank): stated bound, 5% relative L2 error.
    assert float((y - x).norm() / x.norm()) < 0.05
    again = to_spectrogram(y, cfg)
    assert float((again[:, 0] - spec[:, 0]).norm() / spec[:, 0].norm()) < 0.05


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
@pytest.mark.e2e
def test_demo_cli_end_to_end_at_toy_size(tmp_path):
    r = run_cli(
        "train",
        "--epochs",
        "2",
        "--clips",
        "12",
        "--batch-size",
        "4",
        "--out",
        str(tmp_path),
        "--name",
        "toy",
        "--no-progress",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    run = tmp_path / "toy"
    history = MetricsHistory.load(run / "history.json")
    assert len(history.epochs) == 2 and history.epochs[0].val_stft_loss > 0
    assert load_config(run / "config.toml") == LossConfig()
    assert "distill-stft==0.1.0" in (run / "config.toml").read_text().splitlines()[0]
    assert json.loads((run / "lock.json").read_text())["kl"]["distribution"] == "distill-kl"
    assert (run / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for i in range(3):
        with wave.open(str(run / "samples" / f"{i:02d}_reconstruction.wav")) as w:
            assert w.getframerate() == 16000 and w.getnframes() == SpectrogramConfig().samples


@pytest.mark.slow
@pytest.mark.e2e
def test_demo_with_mel_bins_and_a_bad_value(tmp_path):
    r = run_cli(
        "train",
        "--epochs",
        "1",
        "--clips",
        "8",
        "--mel-bins",
        "64",
        "--out",
        str(tmp_path),
        "--no-progress",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    bad = run_cli("train", "--epochs", "1", "--mel-bins", "50", "--out", str(tmp_path), "--no-progress", cwd=tmp_path)
    assert bad.returncode == 2 and "--mel-bins: expected a multiple of 16 between 16 and 256" in bad.stderr


def write_wav(path, data, rate, channels=1):
    pcm = (np.clip(data, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


@pytest.mark.slow
@pytest.mark.e2e
def test_demo_reads_a_wav_folder(tmp_path):
    data = tmp_path / "wavs"
    data.mkdir()
    t = np.arange(22050) / 22050
    write_wav(data / "a.wav", 0.3 * np.sin(2 * np.pi * 330 * t), 22050)
    stereo = np.stack([0.2 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 440 * t)], axis=1).ravel()
    write_wav(data / "b.wav", stereo, 22050, channels=2)
    r = run_cli("train", "--data", str(data), "--epochs", "1", "--out", str(tmp_path), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.e2e
@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda d: None, "no .wav files found"),
        (lambda d: (d / "notes.txt").write_text("hello"), "no .wav files found"),
        (lambda d: (d / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav"), "broken.wav: not a PCM WAV file"),
    ],
)
def test_bad_audio_is_a_one_line_error_with_exit_2(tmp_path, setup, message):
    data = tmp_path / "in"
    data.mkdir()
    setup(data)
    r = run_cli("train", "--data", str(data), "--epochs", "1", "--out", str(tmp_path), "--no-progress", cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "val_losses,rises", [([], 0), ([1.0], 0), ([1, 2, 3], 2), ([3, 2, 3, 4, 5], 3), ([1, 2, 2], 0)]
)
def test_divergence_count_is_derived_from_the_history(val_losses, rises):
    from distill_core.training.loop import _consecutive_rises

    epochs = [EpochMetrics(i, 9, 1.0, v, 0.0, 0.0, 0.0, 0.0, 1e-3, 0.0, 0.0) for i, v in enumerate(val_losses)]
    assert _consecutive_rises(epochs) == rises
