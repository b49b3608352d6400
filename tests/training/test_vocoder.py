"""The demo vocoder: shapes, size, its mel front end, its batch, that it learns, and the segment dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill_core import CombinedLoss, load_config
from distill_core.dsp.mel import mel_filterbank
from distill_core.training.audio import AudioError, write_wav
from distill_core.training.checkpoint import CheckpointError, save_checkpoint
from distill_core.training.segments import WavSegments
from distill_core.training.vocoder import (
    LogMel,
    Vocoder,
    VocoderConfig,
    load_vocoder,
    load_vocoder_config,
    save_vocoder_config,
    vocode,
    vocoder_batch,
)

SMALL = VocoderConfig(n_fft=256, hop=64, mel_bins=32, channels=32, upsample_rates=(4, 4, 4))


def test_default_size_and_shapes():
    model = Vocoder()
    assert 100_000 < sum(p.numel() for p in model.parameters()) < 1_000_000
    wave = 0.1 * torch.randn(2, 1, 4 * 256)
    batch = vocoder_batch(model, wave)
    assert batch["mel"].shape == (2, 80, 4)
    assert batch["recon_wave"].shape == batch["target_wave"].shape == (2, 1, 1024)
    assert batch["target_wave"] is wave and batch["recon_wave"].requires_grad and not batch["mel"].requires_grad
    assert batch["recon_wave"].abs().max() < 1  # tanh output


def test_odd_upsampling_rates_keep_the_length():
    model = Vocoder(VocoderConfig(n_fft=240, hop=60, mel_bins=16, channels=16, upsample_rates=(5, 3, 4)))
    assert vocoder_batch(model, torch.randn(1, 600))["recon_wave"].shape == (1, 1, 600)


def test_log_mel_is_the_shared_filterbank_over_the_stft():
    wave = torch.randn(2, 512, dtype=torch.float32)
    window = torch.hann_window(256)
    mag = torch.stft(wave, 256, 64, window=window, return_complex=True).abs()[..., :-1]
    fb = torch.from_numpy(mel_filterbank(16000, 256, 32, fmax=8000.0))
    torch.testing.assert_close(LogMel(SMALL)(wave[:, None]), torch.log((fb @ mag).clamp(min=1e-5)))


@pytest.mark.parametrize("shape", [(2, 2, 640), (2, 1, 100), (640,)])
def test_bad_batch_names_the_shape(shape):
    with pytest.raises(ValueError, match=r"vocoder_batch: inputs of shape \[.*multiple of the hop \(64\)"):
        vocoder_batch(Vocoder(SMALL), torch.randn(*shape))


def test_config_checks_the_hop():
    with pytest.raises(ValueError, match=r"upsample_rates \[8, 8\] multiply to 64, expected the hop \(256\)"):
        VocoderConfig(upsample_rates=(8, 8))


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    t = torch.arange(1280) / 16000
    wave = (0.3 * torch.sin(2 * math.pi * 220 * t) + 0.1 * torch.sin(2 * math.pi * 660 * t))[None, None]
    wave = torch.cat([wave, 0.5 * wave])
    model = Vocoder(SMALL)
    loss = CombinedLoss(
        load_config(
            {
                "recipe": "none",
                "terms": {
                    "stft": {
                        "input": "waveform",
                        "fft_sizes": [128, 256],
                        "hop_sizes": [32, 64],
                        "win_lengths": [128, 256],
                        "inputs": {"recon": "recon_wave", "target": "target_wave"},
                    }
                },
            }
        )
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    values = []
    for _ in range(12):
        out = loss(vocoder_batch(model, wave))
        optimizer.zero_grad()
        loss.backward(out)
        optimizer.step()
        values.append(float(out["total_loss"].detach()))
    assert values[-1] < 0.8 * values[0], values


@pytest.mark.slow
def test_the_batch_and_loss_never_sync(sync_counter):
    model = Vocoder(SMALL)
    loss = CombinedLoss(
        load_config(
            {
                "recipe": "none",
                "terms": {
                    "mel": {
                        "sample_rate": 16000,
                        "n_mels": [16, 32],
                        "window_lengths": [64, 256],
                        "inputs": {"recon": "recon_wave", "target": "target_wave"},
                    }
                },
            }
        )
    )
    wave = torch.randn(2, 1, 640)
    loss.backward(loss(vocoder_batch(model, wave)))  # building and the first batch's checks may read the host
    sync_counter.update({k: 0 for k in sync_counter})
    out = loss(vocoder_batch(model, wave))
    loss.backward(out)
    assert sum(sync_counter.values()) == 0, sync_counter


def test_vocode_trims_to_the_clip_length():
    model = Vocoder(SMALL).eval()
    out = vocode(model, torch.randn(3, 1000), batch_size=2)
    assert out.shape == (3, 1000)
    padded = torch.nn.functional.pad(torch.randn(1, 1000), (0, 24))
    torch.testing.assert_close(vocode(model, padded[:, :1000]), model(model.mel(padded))[:, 0, :1000].detach())


def test_run_folder_round_trip_and_errors(tmp_path):
    model = Vocoder(SMALL)
    save_vocoder_config(SMALL, tmp_path / "vocoder.json")
    assert load_vocoder_config(tmp_path / "vocoder.json") == SMALL
    save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict()})
    loaded = load_vocoder(tmp_path)
    x = torch.randn(1, 32, 5)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    save_checkpoint(tmp_path / "other.pt", {"model": Vocoder(VocoderConfig()).state_dict()})
    with pytest.raises(CheckpointError, match=r"other.pt: weights do not fit the vocoder of .*vocoder.json"):
        load_vocoder(tmp_path, "other.pt")
    (tmp_path / "vocoder.json").write_text('{"hop": "x"}')
    with pytest.raises(CheckpointError, match=r"vocoder.json: invalid vocoder settings: hop"):
        load_vocoder(tmp_path)


def test_segments_are_deterministic_and_cover_the_files(tmp_path):
    write_wav(tmp_path / "a.wav", torch.linspace(-0.5, 0.5, 8000), 16000)
    write_wav(tmp_path / "sub" / "b.wav", torch.full((100,), 0.25), 16000)  # shorter than a segment
    write_wav(tmp_path / "c.wav", torch.linspace(0, 0.5, 16000), 8000)  # resampled to 32000 samples
    data = WavSegments(tmp_path, 512, 16000, count=40, seed=3)
    again = WavSegments(tmp_path, 512, 16000, count=40, seed=3)
    items = [data[i] for i in range(40)]
    assert all(x.shape == (1, 512) for x in items)
    assert all(torch.equal(x, again[i]) for i, x in enumerate(reversed(items[::-1])))
    assert not torch.equal(items[0], WavSegments(tmp_path, 512, 16000, count=40, seed=4)[0])
    assert any(x.min() < 0 for x in items) and any(x.min() >= 0 for x in items)  # a.wav's and c.wav's ramps
    short = WavSegments(tmp_path / "sub", 512, 16000, count=1)[0]  # a file shorter than a segment
    assert torch.allclose(short[0, :100], torch.tensor(0.25), atol=1e-4) and (short[0, 100:] == 0).all()
    assert data.weights.tolist() == pytest.approx(np.array([8000, 32000, 100]) / 40100)
    with pytest.raises(IndexError):
        data[40]


def test_segments_name_an_empty_folder(tmp_path):
    with pytest.raises(AudioError, match=f"{tmp_path}: no .wav files found"):
        WavSegments(tmp_path, 512, 16000, count=4)
