"""A WAV cut short (its header claims more frames than the file holds: a copy or download that stopped) is one line
naming the file, never a traceback or a silently shorter corpus (issue 36, item 10)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from distill_core.cli.main import main
from distill_core.training.audio import AudioError, read_wav, wav_clips, write_wav

FRAMES = 16_000


@pytest.fixture(autouse=True)
def keep_sigterm():
    """train installs a SIGTERM handler; in-process runs must not leave it behind."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def cut(folder: Path, keep_bytes: int) -> Path:
    """A 16-bit mono WAV of FRAMES frames whose data is cut after ``keep_bytes`` bytes (the header unchanged)."""
    whole = folder / "whole.wav"
    write_wav(whole, 0.1 * torch.sin(torch.arange(FRAMES) / 5.0), 16_000)
    path = folder / "cut.wav"
    path.write_bytes(whole.read_bytes()[: 44 + keep_bytes])
    whole.unlink()
    return path


@pytest.mark.parametrize("kept", [0, 1, 200, 2 * 8000 + 1], ids=["no data", "half a frame", "100 frames", "odd byte"])
def test_every_reader_names_the_file_and_how_far_it_goes(tmp_path, kept):
    path = cut(tmp_path, kept)
    message = (
        f"{path}: cut short: its header claims {FRAMES} frames, but the file ends after {kept // 2} frames; "
        "expected a complete WAV file (copy it again, or remove it)"
    )
    for read in (
        lambda: read_wav(path),
        lambda: wav_clips(path, 4000, 16_000, 8),
        lambda: wav_clips(path, 32_000, 16_000, 8),
    ):
        with pytest.raises(AudioError) as info:
            read()
        assert str(info.value) == message


def test_what_a_cut_file_holds_before_its_end_can_still_be_read(tmp_path):
    path = cut(tmp_path, 2 * 100)
    data, rate = read_wav(path, max_frames=50)
    assert rate == 16_000 and data.shape == (50,)


def test_train_on_a_folder_with_a_cut_wav_is_one_line_and_exit_2(tmp_path):
    data = tmp_path / "wavs"
    data.mkdir()
    write_wav(data / "a_good.wav", 0.1 * torch.randn(20_000), 16_000)
    bad = cut(data, 2 * 300)
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "out"),
            "--epochs",
            "1",
            "--clips",
            "4",
            "--batch-size",
            "2",
            "--no-progress",
            "--no-tensorboard",
        ],
    )
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.splitlines() == [
        f"error: {bad}: cut short: its header claims {FRAMES} frames, but the file ends after 300 frames; "
        "expected a complete WAV file (copy it again, or remove it)"
    ]
    assert not (tmp_path / "out" / "demo" / "last.pt").exists()


def test_a_streamed_wav_that_claims_the_largest_size_is_read_to_its_end(tmp_path):
    """A writer that streams to a pipe cannot know the length and claims 2**32 - 1 bytes: not a file cut short;
    its last, partial frame is dropped (it was a traceback)."""
    path = cut(tmp_path, 2 * 5000 + 1)
    raw = bytearray(path.read_bytes())
    raw[40:44] = (0xFFFF_FFFF).to_bytes(4, "little")  # the data chunk's size
    path.write_bytes(bytes(raw))
    data, _ = read_wav(path)
    assert data.shape == (5000,)
    assert len(wav_clips(path, 1000, 16_000, 8)) == 5
