"""A vocoder run trained with non-default model settings, resumed by ``distill-loss train --resume RUN/last.pt``
in its own process: the CLI (which has no vocoder options) rebuilds the model from the run's own vocoder.json
beside last.pt, and the resumed run continues the one it was, bit for bit (issue 36, item 17)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill_core.training.run import DemoSettings
from distill_core.training.vocoder import VOCODER_FILE, Vocoder, VocoderConfig, load_vocoder, load_vocoder_config
from distill_core.training.vocoder_run import VocoderTraining, run_vocoder

CLI = Path(sys.executable).with_name("distill-loss")
# Every model setting but the sample rate off its default: a hop of 64 in three stages, 32 channels, 32 mel bands,
# one residual kernel. The segment (8192) and validation segments (8) are the defaults the CLI trains with.
SMALL = VocoderConfig(
    n_fft=256,
    hop=64,
    mel_bins=32,
    fmax=7000.0,
    channels=32,
    upsample_rates=(4, 4, 4),
    resblock_kernels=(3,),
    resblock_dilations=(1,),
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def train_in_python(out: Path, name: str, epochs: int) -> Path:
    settings = DemoSettings(
        name=name, out=out, epochs=epochs, clips=2, batch_size=2, threads=1, tensorboard=False, samples=1
    )
    return run_vocoder(settings, progress=False, training=VocoderTraining(vocoder=SMALL))


def test_a_resumed_vocoder_run_rebuilds_its_own_non_default_model(tmp_path):
    assert SMALL != VocoderConfig()
    cut = train_in_python(tmp_path, "cut", epochs=1)
    straight = train_in_python(tmp_path, "straight", epochs=2)
    settings = (cut / VOCODER_FILE).read_bytes()
    assert load_vocoder_config(cut / VOCODER_FILE) == SMALL

    done = subprocess.run(
        [str(CLI), "train", "--resume", str(cut / "last.pt"), "--epochs", "2", "--change-options", "--no-progress"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "epoch 2/2" in done.stdout
    assert (cut / VOCODER_FILE).read_bytes() == settings  # the run's settings, kept as they were

    ours, theirs = (torch.load(run / "last.pt", weights_only=True) for run in (cut, straight))
    assert ours["epoch"] == theirs["epoch"] == 1
    shapes = {k: tuple(v.shape) for k, v in Vocoder(SMALL).state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours["model"].items()} == shapes
    default = {k: tuple(v.shape) for k, v in Vocoder(VocoderConfig()).state_dict().items()}
    assert shapes != default  # the check above tells the two models apart
    assert [k for k in theirs["model"] if not torch.equal(ours["model"][k], theirs["model"][k])] == []
    assert isinstance(load_vocoder(cut, "last.pt"), Vocoder) and load_vocoder(cut, "last.pt").config == SMALL
