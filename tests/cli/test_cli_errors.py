"""distill-loss train refusals: one line naming the offender, exit 2, and nothing on disk changed."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from distill_core.cli.main import main
from distill_core.training.checkpoint import load_checkpoint, save_checkpoint
from distill_core.training.run_lock import OWNER_NAME

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
    return {
        str(p.relative_to(folder)): f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_mtime_ns}"
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


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
    one_line_error(
        result,
        f"{run_copy}: already holds a run (history.json, last.pt, best.pt)",
        f"continue it with --resume {run_copy / 'last.pt'}",
        "choose another --name",
        "pass --overwrite to replace it",
    )
    assert snapshot(run_copy) == before


def test_resume_from_another_folder_into_a_finished_run_is_refused(run_copy, tmp_path):
    other = tmp_path / "elsewhere.pt"
    shutil.copy(run_copy / "last.pt", other)
    before = snapshot(run_copy)
    result = run("train", *TOY, "--out", str(run_copy.parent), "--name", "done", "--resume", str(other))
    one_line_error(result, f"{run_copy}: already holds a run")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    "device,message",
    [
        ("bogus", "--device: expected cpu, cuda, cuda:N or mps, got 'bogus'"),
        ("meta", "--device: expected a device that holds data (cpu, cuda, cuda:N, mps), got 'meta'"),
        pytest.param(
            "cuda",
            "--device: 'cuda' requested, but this torch build has no CUDA support",
            marks=pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA build of torch"),
        ),
        pytest.param(
            "cuda:7",
            "--device: 'cuda:7' requested, but",
            marks=pytest.mark.skipif(torch.cuda.device_count() > 7, reason="eight GPUs here"),
        ),
    ],
)
def test_a_bad_device_is_refused_before_anything_is_written(tmp_path, device, message):
    result = run("train", *TOY, "--out", str(tmp_path / "out"), "--device", device)
    one_line_error(result, message)
    assert not (tmp_path / "out").exists()


def test_a_changed_loss_config_is_refused_at_resume(run_copy, tmp_path):
    config = tmp_path / "loss.toml"
    config.write_text("[terms.kl]\nfree_bits = 0.2\n[groups.reconstruction]\nweight = 0.3\n")
    before = snapshot(run_copy)
    result = run(
        "train",
        str(config),
        *TOY,
        "--epochs",
        "2",
        "--change-options",
        "--out",
        str(run_copy.parent),
        "--name",
        "done",
        "--resume",
        str(run_copy / "last.pt"),
    )
    one_line_error(
        result,
        f"{run_copy / 'last.pt'}: the loss differs from the run's: ",
        "terms.kl.free_bits: 0.1 -> 0.2; groups.reconstruction.weight: 0.1 -> 0.3",
        f"resume with the run's config ({run_copy / 'config.toml'}), or pass --force-config",
    )
    assert snapshot(run_copy) == before


def test_force_config_starts_a_new_segment_and_keeps_the_old_best(run_copy, tmp_path):
    config = tmp_path / "loss.toml"
    config.write_text("[terms.kl]\nfree_bits = 0.2\n")
    old_best = (run_copy / "best.pt").read_bytes()
    old_config = (run_copy / "config.toml").read_text()
    result = run(
        "train",
        str(config),
        *TOY,
        "--epochs",
        "2",
        "--change-options",
        "--out",
        str(run_copy.parent),
        "--name",
        "done",
        "--resume",
        str(run_copy / "last.pt"),
        "--force-config",
    )
    assert result.exit_code == 0, (result.output, result.exception)
    history = json.loads((run_copy / "history.json").read_text())
    assert [e["epoch"] for e in history["epoch_metrics"]] == [0, 1]
    assert history["distill"]["segments"] == [
        {"start_epoch": 1, "reason": "--force-config: terms.kl.free_bits: 0.1 -> 0.2"}
    ]
    assert (run_copy / "best.before-epoch1.pt").read_bytes() == old_best
    assert (run_copy / "config.before-epoch1.toml").read_text() == old_config
    assert "free_bits = 0.2" in (run_copy / "config.toml").read_text()
    state = load_checkpoint(run_copy / "best.pt")
    assert (
        state["epoch"] == 1 and state["best_val"] == history["epoch_metrics"][1]["val_loss"]
    )  # best of the new segment


def test_resume_with_other_mel_bins_names_the_mismatch(run_copy):
    before = snapshot(run_copy)
    resume = ("--out", str(run_copy.parent), "--name", "done", "--resume", str(run_copy / "last.pt"))
    one_line_error(
        run("train", *TOY, *resume, "--mel-bins", "64"),
        f"error: --mel-bins 64 differs from the run's none ({run_copy / 'run.json'}); pass --change-options to "
        "continue the run with it, or leave --mel-bins out to keep the run's",
    )
    result = run("train", *TOY, "--epochs", "2", "--change-options", *resume, "--mel-bins", "64")
    one_line_error(
        result,
        f"{run_copy / 'last.pt'}: the checkpoint's model does not fit this model",
        "differ in shape",
        "saved,",
        "(the same --mel-bins)",
    )
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda s: s.pop("model"), "checkpoint has no 'model' entry; expected a training checkpoint"),
        (lambda s: s.update(history=[1, 2]), "checkpoint entry 'history' is list, expected a history table"),
        (lambda s: s.update(epoch="3"), "checkpoint entry 'epoch' is str, expected an int"),
        (lambda s: s.update(rng={}), "checkpoint entry 'rng' has no 'torch' generator state"),
        (lambda s: s["history"].update(epoch_metrics=[{"epoch": 0}]), "epoch_metrics[0].total_epochs: missing"),
    ],
)
def test_a_damaged_checkpoint_is_one_line(run_copy, damage, message):
    state = load_checkpoint(run_copy / "last.pt")
    damage(state)
    state.pop("format")
    save_checkpoint(run_copy / "last.pt", state)
    before = snapshot(run_copy)
    result = run(
        "train",
        *TOY,
        "--epochs",
        "2",
        "--change-options",
        "--out",
        str(run_copy.parent),
        "--name",
        "done",
        "--resume",
        str(run_copy / "last.pt"),
    )
    one_line_error(result, str(run_copy / "last.pt"), message)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    "content,message",
    [
        (
            lambda p: torch.save({"format": 1, "path": pathlib.PurePosixPath("x")}, p),
            "not a distill checkpoint: it stores Python objects (pathlib.PurePosixPath), and checkpoints are loaded as "
            "tensors and plain data only",
        ),
        (lambda p: p.write_bytes(b"hello, not a checkpoint"), "not a distill checkpoint, or a truncated one"),
        (lambda p: torch.save({"model": {}}, p), "not a distill checkpoint (expected format 1)"),
    ],
)
def test_a_checkpoint_that_is_not_ours_says_so(tmp_path, content, message):
    path = tmp_path / "foreign.pt"
    content(path)
    result = run("train", *TOY, "--out", str(tmp_path / "out"), "--resume", str(path))
    err = one_line_error(result, f"{path}: {message}")
    assert "weights_only" not in err and "trust" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
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
    run_demo(
        DemoSettings(
            name="r", out=tmp_path, epochs=1, clips=6, batch_size=3, seed=1, spectrogram=small, overwrite=True
        ),
        progress=False,
    )
    assert (tmp_path / "r" / "last.pt").read_bytes() != first


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt(rate: int, channels: int = 1, width: int = 2) -> bytes:
    return b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, channels, rate, rate * channels * width, channels * width, 8 * width
    )


def data(frames: int, width: int = 2) -> bytes:
    return b"data" + struct.pack("<I", frames * width) + bytes(frames * width)


@pytest.mark.parametrize(
    "wav,message",
    [
        (
            riff(fmt(16000), b"JUNK" + struct.pack("<I", 0xFFFFFF00) + b"xx", data(100)),
            "not a PCM WAV file this reader supports (RuntimeError: a chunk header is corrupt or truncated)",
        ),
        (riff(fmt(0), data(20_000)), "sample rate 0 Hz is out of range; expected 1000 to 1000000 Hz"),
        (riff(fmt(1), data(20_000)), "sample rate 1 Hz is out of range; expected 1000 to 1000000 Hz"),
    ],
    ids=["junk chunk", "rate 0", "rate 1 Hz"],
)
def test_a_bad_wav_is_one_line_and_nothing_is_written(tmp_path, wav, message):
    folder = tmp_path / "wavs"
    folder.mkdir()
    (folder / "bad.wav").write_bytes(wav)
    result = run("train", *TOY, "--data", str(folder), "--out", str(tmp_path / "out"))
    one_line_error(result, f"{folder / 'bad.wav'}: {message}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text,message",
    [
        (
            'recipe = ["vae"]\n',
            "recipe: expected one of 'vae', 'bigvgan_v2', 'dac', 'encodec', 'hifigan_v1', 'vocos', 'none', got ['vae']",
        ),
        ('[groups.g]\nkind = ["sum"]\n', "groups.g.kind: expected one of 'sum', 'reconstruction', got ['sum']"),
        ('[terms.stft]\nfft_sizes = "512"\n', "terms.stft.fft_sizes: expected a list of int, got '512'"),
    ],
)
@pytest.mark.parametrize("command", ["check", "train"])
def test_config_errors_are_one_line(tmp_path, text, message, command):
    config = tmp_path / "loss.toml"
    config.write_text(text)
    extra = [*TOY, "--out", str(tmp_path / "out")] if command == "train" else []
    result = run(command, str(config), *extra)
    one_line_error(result, f"invalid loss config in {config}: {message}")
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_debug_shows_the_traceback(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "distill_core.cli.main",
            "--debug",
            "train",
            "--device",
            "bogus",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "Traceback" in r.stderr and "SettingsError: --device" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_truncated_lock_names_the_file(tmp_path):
    from distill_core.loss.lockfile import LockError, check_lock

    lock = tmp_path / "lock.json"
    lock.write_text('{"stft": {"distribution": "distill-stft", "vers')
    with pytest.raises(
        LockError,
        match=rf"^{re.escape(str(lock))}: truncated or corrupt JSON at line 1, column 43: Unterminated string",
    ):
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
    changed = load_config(
        {
            "terms": {
                "kl": {"free_bits": 0.2},
                "stft": {"fft_sizes": [256, 1024, 2048], "win_lengths": [256, 1024, 2048]},
            }
        }
    )
    before = snapshot(tmp_path)
    with pytest.raises(LossChangedError) as err:
        train(model(), *loaders, changed, epochs=2, checkpoint_dir=tmp_path, resume_from=tmp_path / "last.pt")
    assert err.value.changes == [
        "terms.stft.fft_sizes: [512, 1024, 2048] -> [256, 1024, 2048]",
        "terms.stft.win_lengths: [512, 1024, 2048] -> [256, 1024, 2048]",
        "terms.kl.free_bits: 0.1 -> 0.2",
    ]
    assert str(err.value).startswith(f"{tmp_path / 'last.pt'}: the loss differs from the checkpoint's: terms.stft")
    assert "pass new_segment= to accept the change" in str(err.value)
    assert snapshot(tmp_path) == before

    history = train(
        model(),
        *loaders,
        changed,
        epochs=2,
        checkpoint_dir=tmp_path,
        resume_from=tmp_path / "last.pt",
        new_segment="smaller first FFT",
    )
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
    with pytest.raises(
        CheckpointError,
        match=r"the checkpoint's model does not fit this model: \d+ tensor\(s\) "
        r"differ in shape, first '[\w.]+': \[\d+(, \d+)*\] saved",
    ):
        train(model(latent_dim=4), *loaders, LossConfig(), epochs=2, resume_from=tmp_path / "last.pt")


# --- issue 21: concurrent writers, killed and failed saves, paths in the way, damaged histories ---------------

CLI = [sys.executable, "-m", "distill_core.cli.main"]


def content(folder: pathlib.Path, *names: str) -> dict[str, str]:
    """SHA-256 of the named files (for runs that rewrite their config but must keep these)."""
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def wait_for(condition, proc, what: str, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"exited with {proc.returncode} before {what}: {proc.stderr.read()}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.e2e
def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    """Two real processes, one run folder: the second exits 2 naming the first and changes nothing."""
    folder = tmp_path / "same"
    first = subprocess.Popen(
        [
            *CLI,
            "train",
            "--epochs",
            "50",
            "--clips",
            "8",
            "--batch-size",
            "2",
            "--no-progress",
            "--out",
            str(tmp_path),
            "--name",
            "same",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: (folder / "history.json").exists() and (folder / OWNER_NAME).exists(),
            first,
            "the first epoch's save",
        )
        first.send_signal(signal.SIGSTOP)  # holds the lock, writes nothing while the second tries
        before = snapshot(folder)
        seconds = [
            subprocess.run(
                [*CLI, "train", *TOY, "--out", str(tmp_path), "--name", "same", *flag],
                capture_output=True,
                text=True,
                timeout=300,
            )
            for flag in ([], ["--overwrite"])
        ]
        assert snapshot(folder) == before
    finally:
        first.send_signal(signal.SIGCONT)
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    for second in seconds:  # refused whether or not it asked to replace the run
        assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert second.stderr.startswith(
            f"error: {folder}: another distill-loss train is writing this run folder "
            f"(pid {first.pid} on {socket.gethostname()}, since 20"
        ), second.stderr
        assert "--name same" in second.stderr and "wait for it to end, or choose another --name" in second.stderr
    assert first.returncode == 130  # SIGTERM: interrupted, finished epochs kept
    history = json.loads((folder / "history.json").read_text())  # never an epoch that last.pt does not hold:
    assert history["epoch_metrics"][-1]["epoch"] <= load_checkpoint(folder / "last.pt")["epoch"]  # saved first
    assert not (folder / OWNER_NAME).exists()  # the record goes with the lock


def limited(max_bytes: int):
    """preexec_fn: files may grow to ``max_bytes``; a write beyond fails with EFBIG (Python ignores SIGXFSZ)."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


# The CLI with SIGXFSZ's default action restored: the kernel kills the process in the write that passes the limit.
DIES_AT_THE_LIMIT = [
    sys.executable,
    "-c",
    "import signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
    "sys.argv[0] = 'distill-loss'; from distill_core.cli.main import main; main()",
]


@pytest.mark.slow
@pytest.mark.e2e
def test_a_save_killed_midway_leaves_a_temporary_the_next_start_removes(tmp_path):
    folder = tmp_path / "killed"
    killed = subprocess.run(
        [*DIES_AT_THE_LIMIT, "train", *TOY, "--out", str(tmp_path), "--name", "killed"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited(2_000_000),
    )
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr
    left = [p.name for p in folder.iterdir() if p.name.startswith(".last.pt.")]
    assert len(left) == 1 and re.fullmatch(r"\.last\.pt\.[a-z0-9_]{8}\.tmp", left[0])
    assert not (folder / "history.json").exists()  # checkpoints are written first: no history claims the epoch
    (folder / ".notes.txt.tmp").write_text("not ours")  # a user's file that only looks like a temporary
    again = subprocess.run(
        [*CLI, "train", *TOY, "--out", str(tmp_path), "--name", "killed"], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert f"{folder}: removed 1 temporary file(s) of a save that was killed: {left[0]}" in again.stdout
    assert not (folder / left[0]).exists() and (folder / ".notes.txt.tmp").read_text() == "not ours"


@pytest.mark.slow
@pytest.mark.e2e
def test_a_failed_checkpoint_write_is_one_line_and_history_agrees_with_last_pt(run_copy):
    kept = content(run_copy, "history.json", "last.pt", "best.pt")
    r = subprocess.run(
        [
            *CLI,
            "train",
            *TOY,
            "--epochs",
            "2",
            "--change-options",
            "--out",
            str(run_copy.parent),
            "--name",
            "done",
            "--resume",
            str(run_copy / "last.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited(2_000_000),
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(
        f"error: {run_copy / 'last.pt'}: cannot write: File too large (errno 27); its "
        "previous version, if any, is unchanged"
    ), r.stderr
    assert content(run_copy, "history.json", "last.pt", "best.pt") == kept
    assert not [p for p in run_copy.iterdir() if p.name.endswith(".tmp")]


def test_a_file_in_the_way_of_out_is_refused_before_any_work(finished, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(
        run("train", *TOY, "--out", str(afile / "runs")),
        f"--out {afile / 'runs'}: {afile} is a file, so the runs folder cannot be created there",
    )
    # --data names a folder that does not exist: the --out error shows that nothing was read first
    one_line_error(
        run("compare", str(finished), "--data", str(tmp_path / "nowhere"), "--out", str(afile / "cmp")),
        f"--out {afile / 'cmp'}: {afile} is a file, so the folder cannot be created there",
    )
    one_line_error(
        run("plot", str(finished), "--out", str(afile / "p.png")),
        f"--out {afile / 'p.png'}: {afile} is a file, so p.png cannot be written under it",
    )
    assert afile.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def held_out(folder: pathlib.Path) -> pathlib.Path:
    from distill_core.training.audio import write_wav

    for i in range(2):
        write_wav(folder / f"clip{i}.wav", torch.sin(torch.arange(48000) * (0.05 + 0.02 * i)) * 0.5, 16000)
    return folder


HUGE_INT = '{"step_metrics": [], "epoch_metrics": [{"epoch": ' + "9" * 5000 + "}]}"
DEEP = '{"step_metrics": ' + "[" * 100_000 + "]" * 100_000 + ', "epoch_metrics": []}'


@pytest.mark.parametrize(
    "text,message",
    [
        (
            HUGE_INT,
            "not a training history: holds a number Python will not read (Exceeds the limit (4300 digits) for "
            "integer string conversion); expected the losses and counts a run writes",
        ),
        (DEEP, "not a training history: its arrays or objects are nested deeper than Python can read"),
        (None, "truncated or corrupt JSON at line"),
    ],
    ids=["5000-digit integer", "100000 nested arrays", "truncated"],
)
@pytest.mark.parametrize("command", ["plot", "compare"])
def test_a_damaged_history_is_one_line(run_copy, tmp_path, text, message, command):
    history = run_copy / "history.json"
    history.write_text(text if text is not None else history.read_text()[:200])
    before = snapshot(run_copy)
    extra = (
        ["--data", str(held_out(tmp_path / "wavs")), "--out", str(tmp_path / "cmp")]
        if command == "compare"
        else ["--out", str(tmp_path / "p.png")]
    )
    one_line_error(run(command, str(run_copy), *extra), f"{history}: {message}")
    assert snapshot(run_copy) == before and not (tmp_path / "cmp").exists() and not (tmp_path / "p.png").exists()


def test_a_run_compared_or_plotted_with_itself_is_refused(finished, tmp_path):
    for command, extra in (("compare", ["--data", str(held_out(tmp_path / "wavs"))]), ("plot", [])):
        result = run(
            command,
            str(finished),
            str(finished.parent / "." / finished.name),
            *extra,
            "--out",
            str(tmp_path / f"{command}.out"),
        )
        one_line_error(result, f"{finished}: the same run folder is given twice; expected different runs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wavs"]


def test_a_checkpoint_from_a_newer_distill_says_upgrade(run_copy, tmp_path):
    state = load_checkpoint(run_copy / "best.pt")
    state.pop("format")
    save_checkpoint(run_copy / "best.pt", state)
    raw = torch.load(run_copy / "best.pt", weights_only=True)
    torch.save({**raw, "format": 7}, run_copy / "best.pt")
    before = snapshot(run_copy)
    one_line_error(
        run("compare", str(run_copy), "--data", str(held_out(tmp_path / "wavs")), "--out", str(tmp_path / "cmp")),
        f"{run_copy / 'best.pt'}: written by a newer distill (checkpoint format 7; distill-core 0.1.0 "
        "reads format 1); upgrade distill-core to load it",
    )
    assert snapshot(run_copy) == before


NAN_GRAD = '''
import attrs, torch
from distill_core import LossTerm, Weight, hookimpl

@attrs.define
class Cfg:
    weight: Weight = 1.0

class NaNGrad(LossTerm):
    """A finite value whose gradient is NaN: every step is skipped."""
    name = "nan_grad"
    config_class = Cfg
    requires = ("recon",)
    def forward(self, batch):
        x = batch["recon"]
        return (x - x.detach()).abs().sqrt().mean()

@hookimpl
def distill_loss_terms(register):
    register(NaNGrad)
'''


@pytest.mark.slow
@pytest.mark.e2e
def test_a_run_whose_every_step_was_skipped_exits_2_and_keeps_its_files(tmp_path):
    from distill_core.testing import write_distribution

    plugins = tmp_path / "site"
    plugins.mkdir()
    write_distribution(
        plugins, "distill-nan-grad", "0.1", {"nan_grad_plugin": NAN_GRAD}, {"nan_grad": "nan_grad_plugin"}
    )
    config = tmp_path / "loss.toml"
    config.write_text("[terms.nan_grad]\nweight = 1.0\n")
    r = subprocess.run(
        [*CLI, "train", str(config), *TOY, "--epochs", "2", "--out", str(tmp_path), "--name", "nan"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(plugins)},
    )
    folder = tmp_path / "nan"
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr == (
        f"error: {folder}: all 2 training steps of epochs 1-2 had a non-finite loss or gradient and "
        "were skipped (nonfinite_steps in history.json), so the model did not train; the run's files "
        "are kept; check the loss config's weights and [balancer] settings, and the data\n"
    )
    history = json.loads((folder / "history.json").read_text())
    assert [e["nonfinite_steps"] for e in history["distill"]["epochs"]] == [1, 1]
    assert load_checkpoint(folder / "last.pt")["epoch"] == 1 and (folder / "losses.png").is_file()


@pytest.mark.parametrize("command", ["check", "train"])
def test_an_overflowing_balancer_total_norm_is_refused(tmp_path, command):
    config = tmp_path / "loss.toml"
    config.write_text("[balancer]\nenabled = true\ntotal_norm = 1e39\n")
    extra = [*TOY, "--out", str(tmp_path / "out")] if command == "train" else []
    one_line_error(
        run(command, str(config), *extra),
        f"invalid loss config in {config}: balancer.total_norm: expected at most 1e+06 (the norm of the "
        "balanced gradient at the input: larger ones overflow float32 in the model's backward pass), "
        "got 1e+39",
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_resume_without_a_config_reads_the_runs_own(tmp_path):
    config = tmp_path / "loss.toml"
    config.write_text("[terms.kl]\nfree_bits = 0.2\n")
    assert run("train", str(config), *TOY, "--out", str(tmp_path), "--name", "own").exit_code == 0
    folder = tmp_path / "own"
    result = run(
        "train",
        *TOY,
        "--epochs",
        "2",
        "--change-options",
        "--out",
        str(tmp_path),
        "--name",
        "own",
        "--resume",
        str(folder / "last.pt"),
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"config: {folder / 'config.toml'} (the resumed run's own; give a CONFIG to use another)" in result.stdout
    assert load_checkpoint(folder / "last.pt")["config"]["terms"]["kl"]["free_bits"] == 0.2


@pytest.mark.slow
def test_train_on_a_folder_says_what_it_found_and_used(tmp_path):
    wavs = held_out(tmp_path / "wavs")
    result = run("train", *TOY, "--data", str(wavs), "--out", str(tmp_path), "--name", "wav")
    assert result.exit_code == 0, (result.output, result.exception)
    assert (
        f"data: 10 clips of 0.50 s at 16000 Hz from all 2 .wav files in {wavs}; 7 to train, 3 to validate"
        in result.stdout
    )


def test_the_train_library_call_takes_the_run_folder_lock(tmp_path):
    """train() refuses a folder another writer holds (an OS lock taken here, as that process's would be),
    before it restores or writes anything; and a train() inside the CLI's own lock re-enters it."""
    import fcntl

    from torch.utils.data import DataLoader, TensorDataset

    from distill_core import load_config
    from distill_core.training.loop import train
    from distill_core.training.model import SpectrogramVAE
    from distill_core.training.run_lock import LOCK_NAME, RunBusyError, RunFolderLock

    torch.manual_seed(0)
    spectra = torch.rand(4, 2, 16, 16)
    config = load_config({"terms": {"stft": {"fft_sizes": [64], "hop_sizes": [16], "win_lengths": [64]}}})
    loader = DataLoader(TensorDataset(spectra), batch_size=2)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "history.json").write_text("{}\n")
    before = snapshot(folder)
    with open(folder / LOCK_NAME, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunBusyError, match=r"another distill-loss train is writing this run folder"):
            train(
                SpectrogramVAE(16, 16, latent_dim=4, width=4), loader, loader, config, epochs=1, checkpoint_dir=folder
            )
    after = snapshot(folder)
    after.pop(LOCK_NAME, None)
    before.pop(LOCK_NAME, None)
    assert after == before
    with RunFolderLock(folder):
        train(SpectrogramVAE(16, 16, latent_dim=4, width=4), loader, loader, config, epochs=1, checkpoint_dir=folder)
        assert (folder / "last.pt").is_file()


CHECKED_BEFORE_TRAINING = [
    (
        '[terms.stft_wave]\nterm = "stft"\ninput = "waveform"\ninputs = { recon = "recon_wav", target = "target_wave" }\n',
        "terms.stft_wave.inputs.recon: reads batch key 'recon_wav', which distill-loss train does not provide (it "
        "provides recon, mu, logvar, target, recon_wave, target_wave); did you mean 'recon_wave'?",
    ),
    (
        '[balancer]\nenabled = true\ninput = "target"\n',
        "balancer.input: batch key 'target' carries no gradient from the model; a balancer input must be a model "
        "output the balanced terms read (with gradient in distill-loss train: recon, mu, logvar, recon_wave)",
    ),
    (
        '[balancer]\nenabled = true\ninput = "mu"\n',
        "balancer.input: balanced term 'kl' also reads 'logvar', which carries the model's gradient, but the balancer "
        "scales the gradient at 'mu' only (the rest would be dropped); choose an input 'kl' does not read, or its "
        "only one with gradient",
    ),
    (
        '[terms.mag_recon]\ninputs = { target = "recon" }\n',
        "terms.mag_recon.inputs: inputs 'recon' and 'target' of 'mag_recon' both read batch key 'recon'",
    ),
    ('[terms.total]\nterm = "mag_recon"\n', "terms.total: term name 'total' would write output key 'total_loss'"),
    ('[terms.""]\nterm = "stft"\n', "terms.: bad term name '': a term's name is a Python identifier"),
    ('[terms."stft.wave"]\nterm = "stft"\n', "terms.stft.wave: bad term name 'stft.wave'"),
]


@pytest.mark.parametrize("toml,message", CHECKED_BEFORE_TRAINING, ids=range(len(CHECKED_BEFORE_TRAINING)))
def test_check_and_train_refuse_what_training_cannot_run_before_writing(tmp_path, toml, message):
    config = tmp_path / "loss.toml"
    config.write_text(toml)
    one_line_error(run("check", str(config)), message)
    (tmp_path / "runs").mkdir()
    before = snapshot(tmp_path)
    one_line_error(run("train", str(config), "--out", str(tmp_path / "runs"), *TOY), message)
    assert snapshot(tmp_path) == before  # no run folder, config.toml, lock.json or events
