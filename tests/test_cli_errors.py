"""distill-loss train refusals: one line naming the offender, exit 2, and nothing on disk changed."""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from distill_core.cli import main
from distill_core.training.checkpoint import load_checkpoint, save_checkpoint

TOY = ["--epochs", "1", "--clips", "4", "--batch-size", "2", "--no-progress"]


@pytest.fixture(autouse=True)
def keep_sigterm():
    """train installs a SIGTERM handler; in-process runs must not leave it behind."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    err = result.stderr
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path, with its SHA-256 and modification time."""
    return {str(p.relative_to(folder)): f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_mtime_ns}"
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A real finished run at the demo's size, made once by the CLI."""
    out = tmp_path_factory.mktemp("runs")
    before = signal.getsignal(signal.SIGTERM)
    result = run("train", *TOY, "--out", str(out), "--name", "done")
    signal.signal(signal.SIGTERM, before)
    assert result.exit_code == 0, result.output
    return out / "done"


@pytest.fixture
def run_copy(finished, tmp_path):
    """A private copy of the finished run, so a test that writes cannot disturb another."""
    folder = tmp_path / "runs" / "done"
    shutil.copytree(finished, folder)
    return folder


def test_a_finished_run_is_not_overwritten(run_copy):
    before = snapshot(run_copy)
    result = run("train", *TOY, "--out", str(run_copy.parent), "--name", "done")
    one_line_error(result, f"{run_copy}: already holds a run (history.json, last.pt, best.pt)",
                   f"continue it with --resume {run_copy / 'last.pt'}", "choose another --name",
                   "pass --overwrite to replace it")
    assert snapshot(run_copy) == before


def test_resume_from_another_folder_into_a_finished_run_is_refused(run_copy, tmp_path):
    other = tmp_path / "elsewhere.pt"
    shutil.copy(run_copy / "last.pt", other)
    before = snapshot(run_copy)
    result = run("train", *TOY, "--out", str(run_copy.parent), "--name", "done", "--resume", str(other))
    one_line_error(result, f"{run_copy}: already holds a run")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("device,message", [
    ("bogus", "--device: expected cpu, cuda, cuda:N or mps, got 'bogus'"),
    ("meta", "--device: expected a device that holds data (cpu, cuda, cuda:N, mps), got 'meta'"),
    pytest.param("cuda", "--device: 'cuda' requested, but this torch build has no CUDA support",
                 marks=pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA build of torch")),
    pytest.param("cuda:7", "--device: 'cuda:7' requested, but", marks=pytest.mark.skipif(
        torch.cuda.device_count() > 7, reason="eight GPUs here")),
])
def test_a_bad_device_is_refused_before_anything_is_written(tmp_path, device, message):
    result = run("train", *TOY, "--out", str(tmp_path / "out"), "--device", device)
    one_line_error(result, message)
    assert not (tmp_path / "out").exists()


def test_a_changed_loss_config_is_refused_at_resume(run_copy, tmp_path):
    config = tmp_path / "loss.toml"
    config.write_text("[terms.kl]\nfree_bits = 0.2\n[groups.reconstruction]\nweight = 0.3\n")
    before = snapshot(run_copy)
    result = run("train", str(config), *TOY, "--epochs", "2", "--out", str(run_copy.parent), "--name", "done",
                 "--resume", str(run_copy / "last.pt"))
    one_line_error(result, f"{run_copy / 'last.pt'}: the loss differs from the run's: ",
                   "terms.kl.free_bits: 0.1 -> 0.2; groups.reconstruction.weight: 0.1 -> 0.3",
                   f"resume with the run's config ({run_copy / 'config.toml'}), or pass --force-config")
    assert snapshot(run_copy) == before


def test_force_config_starts_a_new_segment_and_keeps_the_old_best(run_copy, tmp_path):
    config = tmp_path / "loss.toml"
    config.write_text("[terms.kl]\nfree_bits = 0.2\n")
    old_best = (run_copy / "best.pt").read_bytes()
    old_config = (run_copy / "config.toml").read_text()
    result = run("train", str(config), *TOY, "--epochs", "2", "--out", str(run_copy.parent), "--name", "done",
                 "--resume", str(run_copy / "last.pt"), "--force-config")
    assert result.exit_code == 0, (result.output, result.exception)
    history = json.loads((run_copy / "history.json").read_text())
    assert [e["epoch"] for e in history["epoch_metrics"]] == [0, 1]
    assert history["distill"]["segments"] == [
        {"start_epoch": 1, "reason": "--force-config: terms.kl.free_bits: 0.1 -> 0.2"}]
    assert (run_copy / "best.before-epoch1.pt").read_bytes() == old_best
    assert (run_copy / "config.before-epoch1.toml").read_text() == old_config
    assert "free_bits = 0.2" in (run_copy / "config.toml").read_text()
    state = load_checkpoint(run_copy / "best.pt")
    assert state["epoch"] == 1 and state["best_val"] == history["epoch_metrics"][1]["val_loss"]  # best of the new segment


def test_resume_with_other_mel_bins_names_the_mismatch(run_copy):
    before = snapshot(run_copy)
    result = run("train", *TOY, "--epochs", "2", "--out", str(run_copy.parent), "--name", "done",
                 "--resume", str(run_copy / "last.pt"), "--mel-bins", "64")
    one_line_error(result, f"{run_copy / 'last.pt'}: the checkpoint's model does not fit this model",
                   "differ in shape", "saved,", "(the same --mel-bins)")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("damage,message", [
    (lambda s: s.pop("model"), "checkpoint has no 'model' entry; expected a training checkpoint"),
    (lambda s: s.update(history=[1, 2]), "checkpoint entry 'history' is list, expected a history table"),
    (lambda s: s.update(epoch="3"), "checkpoint entry 'epoch' is str, expected an int"),
    (lambda s: s.update(rng={}), "checkpoint entry 'rng' has no 'torch' generator state"),
    (lambda s: s["history"].update(epoch_metrics=[{"epoch": 0}]), "epoch_metrics[0].total_epochs: missing"),
])
def test_a_damaged_checkpoint_is_one_line(run_copy, damage, message):
    state = load_checkpoint(run_copy / "last.pt")
    damage(state)
    state.pop("format")
    save_checkpoint(run_copy / "last.pt", state)
    before = snapshot(run_copy)
    result = run("train", *TOY, "--epochs", "2", "--out", str(run_copy.parent), "--name", "done",
                 "--resume", str(run_copy / "last.pt"))
    one_line_error(result, str(run_copy / "last.pt"), message)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("content,message", [
    (lambda p: torch.save({"format": 1, "path": pathlib.PurePosixPath("x")}, p),
     "not a distill checkpoint: it stores Python objects (pathlib.PurePosixPath), and checkpoints are loaded as "
     "tensors and plain data only"),
    (lambda p: p.write_bytes(b"hello, not a checkpoint"), "not a distill checkpoint, or a truncated one"),
    (lambda p: torch.save({"model": {}}, p), "not a distill checkpoint (expected format 1)"),
])
def test_a_checkpoint_that_is_not_ours_says_so(tmp_path, content, message):
    path = tmp_path / "foreign.pt"
    content(path)
    result = run("train", *TOY, "--out", str(tmp_path / "out"), "--resume", str(path))
    err = one_line_error(result, f"{path}: {message}")
    assert "weights_only" not in err and "trust" not in err
    assert not (tmp_path / "out").exists()


def test_overwrite_replaces_a_run(tmp_path):
    from distill_core.training.run import DemoSettings, RunExistsError, run_demo
    from distill_core.training.spectrogram import SpectrogramConfig

    small = SpectrogramConfig(sample_rate=8000, n_fft=128, hop=32, frames=32)
    settings = DemoSettings(name="r", out=tmp_path, epochs=1, clips=6, batch_size=3, spectrogram=small)
    run_demo(settings, progress=False)
    first = (tmp_path / "r" / "last.pt").read_bytes()
    with pytest.raises(RunExistsError, match="already holds a run"):
        run_demo(settings, progress=False)
    assert (tmp_path / "r" / "last.pt").read_bytes() == first
    run_demo(DemoSettings(name="r", out=tmp_path, epochs=1, clips=6, batch_size=3, seed=1, spectrogram=small,
                          overwrite=True), progress=False)
    assert (tmp_path / "r" / "last.pt").read_bytes() != first


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt(rate: int, channels: int = 1, width: int = 2) -> bytes:
    return b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * width, channels * width,
                                 8 * width)


def data(frames: int, width: int = 2) -> bytes:
    return b"data" + struct.pack("<I", frames * width) + bytes(frames * width)


@pytest.mark.parametrize("wav,message", [
    (riff(fmt(16000), b"JUNK" + struct.pack("<I", 0xFFFFFF00) + b"xx", data(100)),
     "not a PCM WAV file this reader supports (RuntimeError: a chunk header is corrupt or truncated)"),
    (riff(fmt(0), data(20_000)), "sample rate 0 Hz is out of range; expected 1000 to 1000000 Hz"),
    (riff(fmt(1), data(20_000)), "sample rate 1 Hz is out of range; expected 1000 to 1000000 Hz"),
], ids=["junk chunk", "rate 0", "rate 1 Hz"])
def test_a_bad_wav_is_one_line_and_nothing_is_written(tmp_path, wav, message):
    folder = tmp_path / "wavs"
    folder.mkdir()
    (folder / "bad.wav").write_bytes(wav)
    result = run("train", *TOY, "--data", str(folder), "--out", str(tmp_path / "out"))
    one_line_error(result, f"{folder / 'bad.wav'}: {message}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text,message", [
    ('recipe = ["vae"]\n', "recipe: expected one of 'vae', 'none', got ['vae']"),
    ('[groups.g]\nkind = ["sum"]\n', "groups.g.kind: expected one of 'sum', 'reconstruction', got ['sum']"),
    ('[terms.stft]\nfft_sizes = "512"\n', "terms.stft.fft_sizes: expected a list of int, got '512'"),
])
@pytest.mark.parametrize("command", ["check", "train"])
def test_config_errors_are_one_line(tmp_path, text, message, command):
    config = tmp_path / "loss.toml"
    config.write_text(text)
    extra = [*TOY, "--out", str(tmp_path / "out")] if command == "train" else []
    result = run(command, str(config), *extra)
    one_line_error(result, f"invalid loss config in {config}: {message}")
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "distill_core.cli", "--debug", "train", "--device", "bogus",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" in r.stderr and "SettingsError: --device" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_truncated_lock_names_the_file(tmp_path):
    from distill_core.lock import LockError, check_lock

    lock = tmp_path / "lock.json"
    lock.write_text('{"stft": {"distribution": "distill-stft", "vers')
    with pytest.raises(LockError, match=rf"^{re.escape(str(lock))}: truncated or corrupt JSON at line 1, column 43: Unterminated string"):
        check_lock(lock)


# --- train() itself, as a library ----------------------------------------------------------------------

def tiny_run(folder: pathlib.Path):
    """A finished one-epoch run of a small VAE; returns what a resume needs."""
    from torch.utils.data import DataLoader, TensorDataset

    from distill_core import LossConfig
    from distill_core.training.audio import synthetic_corpus
    from distill_core.training.loop import train
    from distill_core.training.model import SpectrogramVAE
    from distill_core.training.spectrogram import SpectrogramConfig, to_spectrogram

    spec = SpectrogramConfig(sample_rate=8000, n_fft=128, hop=32, frames=32)
    specs = to_spectrogram(synthetic_corpus(12, spec.samples, spec.sample_rate), spec)
    loaders = DataLoader(TensorDataset(specs[4:]), batch_size=4), DataLoader(TensorDataset(specs[:4]), batch_size=4)

    def model(latent_dim=8):
        torch.manual_seed(0)
        return SpectrogramVAE(spec.bins, spec.frames, latent_dim=latent_dim, width=8)

    train(model(), *loaders, LossConfig(), epochs=1, checkpoint_dir=folder)
    return model, loaders


def test_train_refuses_a_changed_loss_unless_a_new_segment_is_named(tmp_path):
    from distill_core import load_config
    from distill_core.training.checkpoint import LossChangedError
    from distill_core.training.loop import train
    from distill_core.training.metrics import Segment

    model, loaders = tiny_run(tmp_path)
    changed = load_config({"terms": {"kl": {"free_bits": 0.2}, "stft": {"fft_sizes": [256, 1024, 2048],
                                                                       "win_lengths": [256, 1024, 2048]}}})
    before = snapshot(tmp_path)
    with pytest.raises(LossChangedError) as err:
        train(model(), *loaders, changed, epochs=2, checkpoint_dir=tmp_path, resume_from=tmp_path / "last.pt")
    assert err.value.changes == ["terms.stft.fft_sizes: [512, 1024, 2048] -> [256, 1024, 2048]",
                                 "terms.stft.win_lengths: [512, 1024, 2048] -> [256, 1024, 2048]",
                                 "terms.kl.free_bits: 0.1 -> 0.2"]
    assert str(err.value).startswith(f"{tmp_path / 'last.pt'}: the loss differs from the checkpoint's: terms.stft")
    assert "pass new_segment= to accept the change" in str(err.value)
    assert snapshot(tmp_path) == before

    history = train(model(), *loaders, changed, epochs=2, checkpoint_dir=tmp_path,
                    resume_from=tmp_path / "last.pt", new_segment="smaller first FFT")
    assert history.segments == [Segment(1, "smaller first FFT: " + "; ".join(err.value.changes))]
    assert load_checkpoint(tmp_path / "best.before-epoch1.pt")["epoch"] == 0
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1  # best of the new segment, whatever epoch 0 scored
    assert json.loads((tmp_path / "history.json").read_text())["distill"]["segments"][0]["start_epoch"] == 1


def test_train_refuses_other_plugin_versions_and_a_model_that_does_not_fit(tmp_path):
    from distill_core import LossConfig
    from distill_core.training.checkpoint import CheckpointError, LossChangedError
    from distill_core.training.loop import train

    model, loaders = tiny_run(tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    state["provenance"]["stft"]["version"] = "0.0.1"
    state.pop("format")
    save_checkpoint(tmp_path / "old.pt", state)
    with pytest.raises(LossChangedError, match=r"plugin for 'stft': distill-stft==0\.0\.1 -> distill-stft==0\.1\.0"):
        train(model(), *loaders, LossConfig(), epochs=2, resume_from=tmp_path / "old.pt")
    with pytest.raises(LossChangedError, match=r"loss: a CombinedLoss -> the legacy vae_loss"):
        train(model(), *loaders, None, epochs=2, resume_from=tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"the checkpoint's model does not fit this model: \d+ tensor\(s\) "
                                              r"differ in shape, first '[\w.]+': \[\d+(, \d+)*\] saved"):
        train(model(latent_dim=4), *loaders, LossConfig(), epochs=2, resume_from=tmp_path / "last.pt")
