"""Terms on any tensor: input mapping, named instances, layouts checked at build, waveform views in training."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from distill_core import BatchError, CombinedLoss, ConfigError, load_config
from distill_core.loss.lockfile import make_lock

ROOT = Path(__file__).resolve().parents[2]


def waves(b=2, n=4096, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, n, generator=g), torch.randn(b, 1, n, generator=g)


SMALL = {"fft_sizes": [256, 512], "hop_sizes": [64, 128], "win_lengths": [256, 512]}


def test_input_mapping_feeds_logical_inputs_from_other_keys(fakes, small_batch):
    config = load_config({"recipe": "none", "terms": {"fake_l1": {"inputs": {"recon": "z_hat", "target": "z"}}}})
    loss = CombinedLoss(config)
    z_hat, z = torch.randn(3, 1, 4), torch.randn(3, 1, 4)
    out = loss({"z_hat": z_hat, "z": z})
    torch.testing.assert_close(out["fake_l1_loss"], (z_hat - z).abs().mean())
    assert loss.reads == {"z_hat", "z"}
    with pytest.raises(
        BatchError,
        match="term 'fake_l1' input 'recon' reads batch key 'z_hat', which the batch lacks; the batch has: recon, z",
    ):
        loss({"recon": z_hat, "z": z})


def test_mapping_errors_name_the_input(fakes):
    with pytest.raises(ConfigError) as info:
        load_config({"recipe": "none", "terms": {"fake_l1": {"inputs": {"recn": "x", "target": 3}}}})
    assert "terms.fake_l1.inputs" in dict(info.value.problems)
    with pytest.raises(
        ConfigError,
        match=r"terms\.fake_l1\.inputs\.recn: 'fake_l1' has no input 'recn'; did you "
        r"mean 'recon'\?; its inputs: recon, target",
    ):
        load_config({"recipe": "none", "terms": {"fake_l1": {"inputs": {"recn": "x"}}}})


def test_named_instances_of_one_class():
    config = load_config(
        {
            "recipe": "none",
            "terms": {
                "stft": {"input": "waveform", **SMALL},
                "stft_fine": {
                    "term": "stft",
                    "input": "waveform",
                    "fft_sizes": [128],
                    "hop_sizes": [32],
                    "win_lengths": [128],
                    "weight": 0.25,
                },
            },
        }
    )
    loss = CombinedLoss(config)
    recon, target = waves()
    out = loss({"recon": recon, "target": target})
    assert {"stft_loss", "stft_fine_loss"} <= set(out)
    from distill_stft import auraloss_reference

    fine = auraloss_reference(config.terms["stft_fine"])(recon, target)
    torch.testing.assert_close(out["stft_fine_loss"], fine, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["total_loss"], out["stft_loss"] + 0.25 * out["stft_fine_loss"])
    assert loss.provenance["stft_fine"].distribution == "distill-stft"
    assert (
        make_lock(loss)["stft_fine"]["distribution"] == "distill-stft"
        and make_lock(loss)["stft_fine"]["term"] == "stft"
    )
    with pytest.raises(BatchError, match=r"^stft_fine: batch\['recon'\]"):  # the instance names itself
        loss.terms["stft_fine"]({"recon": torch.rand(2, 5), "target": torch.rand(2, 5)})


def test_instance_name_of_another_installed_term_is_an_error():
    with pytest.raises(ConfigError, match=r"terms\.kl: 'kl' is the name of the installed term from distill-kl"):
        load_config({"recipe": "none", "terms": {"kl": {"term": "stft"}}})
    with pytest.raises(ConfigError, match=r"terms\.x\.term: unknown term 'nope'"):
        load_config({"recipe": "none", "terms": {"x": {"term": "nope"}}})


def test_config_round_trip_keeps_bindings(tmp_path):
    from distill_core import dump_config

    config = load_config(ROOT / "docs" / "examples" / "vae_wave_core.toml")
    for suffix in (".toml", ".json", ".yaml"):
        assert load_config(dump_config(config, tmp_path / f"c{suffix}")) == config


def test_layout_conflicts_are_one_error_at_build(fakes, register_term):
    from distill_mag_recon import MagReconLoss

    register_term(MagReconLoss)
    spectrograms = {"recon": "B, 2, F, T", "target": "B, 2, F, T"}  # what the VAE recipe's batch declares
    with pytest.raises(ConfigError) as info:
        load_config({"recipe": "none", "terms": {"fake_l1": {}}, "batch": spectrograms})
    problems = dict(info.value.problems)
    assert set(problems) == {"batch.recon", "batch.target"}
    assert "the batch holds [B, 2, F, T], but fake_l1 reads it as [B, C, N]" in problems["batch.recon"]
    with pytest.raises(ConfigError) as info:  # no declared batch: the terms must agree with each other
        load_config({"recipe": "none", "terms": {"fake_l1": {}, "mag_recon": {}}})
    assert (
        "terms disagree on this key's layout: fake_l1 reads it as [B, C, N]; mag_recon reads it as "
        "[B, 2, F, T]" in dict(info.value.problems)["batch.recon"]
    )
    config = load_config({"recipe": "none", "terms": {"fake_l1": {}}, "batch": {"recon": "B, 1, N"}})
    assert config.batch == {"recon": "B, 1, N"}


def test_first_batch_layout_check_lists_every_term():
    loss = CombinedLoss(load_config({"recipe": "none", "terms": {"mag_recon": {}, "if_recon": {}}}))
    with pytest.raises(BatchError) as info:
        loss({"recon": torch.rand(2, 3, 8, 8), "target": torch.rand(2, 3, 8, 8)})
    message = str(info.value)
    for key in ("recon", "target"):  # one sentence per batch key, naming every term that reads it
        assert (
            f"mag_recon, if_recon: batch[{key!r}] expected shape [B, 2, F, T] with 2 channels in dim 1, got "
            "[2, 3, 8, 8]" in message
        )


@pytest.mark.e2e
def test_check_cli_reports_a_layout_conflict(tmp_path):
    path = tmp_path / "loss.toml"
    path.write_text('[terms.stft_wave]\nterm = "stft"\ninput = "waveform"\n')
    r = subprocess.run(
        [sys.executable, "-c", "from distill_core.cli.main import main; main()", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "batch.recon: the batch holds [B, 2, F, T], but stft_wave reads it as [B, C, N]" in r.stderr


def test_waveform_views_carry_gradient_to_the_model():
    from distill_core.training.loop import train_epoch
    from distill_core.training.model import SpectrogramVAE
    from distill_core.training.spectrogram import SpectrogramConfig, WaveformViews, to_spectrogram

    spec = SpectrogramConfig(sample_rate=8000, n_fft=128, hop=32, frames=32)
    torch.manual_seed(0)
    specs = to_spectrogram(torch.randn(4, spec.samples), spec)
    config = load_config(
        {
            "recipe": "none",
            "terms": {
                "stft_wave": {
                    "term": "stft",
                    "input": "waveform",
                    "inputs": {"recon": "recon_wave", "target": "target_wave"},
                    "fft_sizes": [128],
                    "hop_sizes": [32],
                    "win_lengths": [128],
                }
            },
        }
    )
    model = SpectrogramVAE(spec.bins, spec.frames, latent_dim=4, width=8)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    out = train_epoch(
        model, DataLoader(TensorDataset(specs), batch_size=2), optimizer, loss_config=config, views=WaveformViews(spec)
    )
    assert set(out) >= {"stft_wave_loss", "total_loss"} and out["total_loss"] == out["stft_wave_loss"]
    moved = [not torch.equal(a, p) for a, p in zip(before, model.parameters())]
    assert any(moved[-4:])  # the decoder learned from a loss on the waveform inverse of its output


def docs_example() -> str:
    text = (ROOT / "docs" / "config.md").read_text()
    block = re.search(r"```toml\n(# vae_wave\.toml.*?)```", text, re.S)
    assert block, "docs/config.md lost its worked example"
    return block.group(1)


def cli_train(python: Path, config: Path, out: Path, name: str, *args: str) -> dict:
    """``distill-loss train`` in a subprocess; the run's history.json, read back from disk."""
    r = subprocess.run(
        [
            str(python),
            "-c",
            "from distill_core.cli.main import main; main()",
            "train",
            str(config),
            "--epochs",
            "2",
            "--out",
            str(out),
            "--name",
            name,
            "--no-progress",
            "--no-tensorboard",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    history = json.loads((out / name / "history.json").read_text())
    history["console"] = r.stdout + r.stderr
    return history


def write_phase_coherent_tones(folder: Path, clips: int = 96, seed: int = 123) -> Path:
    """WAVs of one demo clip each: partials at FFT-bin centres whose period divides the hop.

    Every clip then starts in the same phase and its phase advances by whole turns from frame to frame,
    so the demo VAE can learn the phase, and a waveform loss such as SI-SDR can improve; each clip mixes
    the partials at its own levels.
    """
    from distill_core.training.audio import write_wav
    from distill_core.training.spectrogram import SpectrogramConfig

    spec = SpectrogramConfig()
    bin_hz = spec.sample_rate / spec.n_fft
    partials = [8, 16, 24, 32]  # bins k with k * hop / n_fft whole: no phase change from frame to frame
    assert all(k * spec.hop % spec.n_fft == 0 for k in partials)
    t = torch.arange(spec.samples, dtype=torch.float64) / spec.sample_rate
    g = torch.Generator().manual_seed(seed)
    for c in range(clips):
        levels = torch.rand(len(partials), generator=g, dtype=torch.float64)
        x = sum(a * torch.sin(2 * math.pi * k * bin_hz * t) for a, k in zip(levels, partials))
        write_wav(folder / f"tone_{c:02d}.wav", (0.5 * x / x.abs().max()).float(), spec.sample_rate)
    return folder


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.serial
def test_docs_example_trains_from_the_cli_and_sisdr_falls(throwaway_env, tmp_path):
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(throwaway_env),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT / "examples" / "distill-sisdr"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    config = tmp_path / "vae_wave.toml"
    config.write_text(docs_example())
    history = cli_train(throwaway_env, config, tmp_path / "runs", "wave", "--clips", "16", "--batch-size", "4")
    every = {"stft_loss", "mag_recon_loss", "if_recon_loss", "kl_loss", "stft_wave_loss", "sisdr_loss"}
    for e in history["distill"]["epochs"]:  # both waveform terms trained and validated every epoch
        assert set(e["components"]) == every and set(e["val_components"]) == every
        assert all(math.isfinite(v) for v in e["components"].values())
    assert "sisdr" in history["console"]  # on the console line too

    # The recipe plus sisdr through the mapping, on clips whose phase the model can learn: sisdr falls.
    added = tmp_path / "vae_sisdr.toml"
    added.write_text('[terms.sisdr]\ninputs = { recon = "recon_wave", target = "target_wave" }\nweight = 0.3\n')
    tones = write_phase_coherent_tones(tmp_path / "tones")
    history = cli_train(
        throwaway_env, added, tmp_path / "runs", "tones", "--data", str(tones), "--batch-size", "8", "--seed", "0"
    )
    first, second = (e["components"]["sisdr_loss"] for e in history["distill"]["epochs"])
    assert second < first - 3.0, (first, second)  # 3 dB better SI-SDR over the second epoch's batches


def test_sisdr_through_the_mapping_and_the_inverse_falls_when_optimised(register_term):
    """The gradient of a waveform term reaches the spectrogram it was computed from, and descends."""
    import sys as _sys

    _sys.path.insert(0, str(ROOT / "examples" / "distill-sisdr"))
    import distill_sisdr

    from distill_core.training.spectrogram import SpectrogramConfig, WaveformViews, to_spectrogram

    register_term(distill_sisdr.SISDRLoss)
    spec = SpectrogramConfig(sample_rate=8000, n_fft=128, hop=32, frames=32)
    torch.manual_seed(0)
    target = to_spectrogram(torch.randn(2, spec.samples), spec)
    recon = (target + 0.3 * torch.randn_like(target)).requires_grad_(True)
    loss = CombinedLoss(
        load_config(
            {
                "recipe": "none",
                "terms": {"sisdr": {"inputs": {"recon": "recon_wave", "target": "target_wave"}}},
                "batch": {},
            }
        )
    )
    views = WaveformViews(spec)
    optimizer = torch.optim.Adam([recon], lr=0.01)
    values = []
    for _ in range(30):
        batch = {"recon": recon, "target": target}
        batch.update(views(batch, loss.reads))
        out = loss(batch)
        optimizer.zero_grad()
        out["total_loss"].backward()
        optimizer.step()
        values.append(out["sisdr_loss"].item())
    assert values[-1] < values[0] - 3.0, values  # at least 3 dB better


@pytest.mark.e2e
def test_a_config_error_comes_before_any_file_is_written(tmp_path):
    config = tmp_path / "loss.toml"
    config.write_text(
        '[terms.stft_wave]\nterm = "stft"\ninput = "waveform"\n'
        'inputs = { recon = "recon_wav", target = "target_wave" }\n'
    )
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from distill_core.cli.main import main; main()",
            "train",
            str(config),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "runs"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert (
        "reads batch key 'recon_wav', which distill-loss train does not provide (it provides recon, mu, logvar, "
        "target, recon_wave, target_wave); did you mean 'recon_wave'?" in r.stderr
    )
    assert not (tmp_path / "runs").exists()
