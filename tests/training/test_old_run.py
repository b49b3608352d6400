"""A run folder written by this project's first release (tests/data/run_v1) loads and resumes completely."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from distill_core import converter, load_config
from distill_core.loss.lockfile import lock_differences
from distill_core.training.checkpoint import load_checkpoint
from distill_core.training.metrics import MetricsHistory

RUN = Path(__file__).parents[1] / "data" / "run_v1"


def test_every_file_of_an_old_run_loads(recwarn):
    history = MetricsHistory.load(RUN / "history.json")
    raw = json.loads((RUN / "history.json").read_text())
    assert [e.val_loss for e in history.epochs] == [e["val_loss"] for e in raw["epochs"]] and len(raw["epochs"]) == 2
    state = load_checkpoint(RUN / "last.pt")
    assert state["epoch"] == 1 and MetricsHistory.from_dict(state["history"]) == history
    config = load_config(RUN / "config.toml")
    assert converter.structure(state["config"], type(config)) == config
    assert config.terms["stft"].fft_sizes == (128,)
    assert lock_differences(json.loads((RUN / "lock.json").read_text())) == []
    assert not recwarn.list


def test_an_old_run_resumes_and_is_then_written_in_the_seed_readable_format(tmp_path):
    from distill_core.training.audio import synthetic_corpus
    from distill_core.training.loop import train
    from distill_core.training.model import SpectrogramVAE
    from distill_core.training.spectrogram import SpectrogramConfig, to_spectrogram

    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    spec = SpectrogramConfig(sample_rate=8000, n_fft=64, hop=16, frames=16)  # the settings it was made with
    specs = to_spectrogram(synthetic_corpus(8, spec.samples, spec.sample_rate, seed=0), spec)
    model = SpectrogramVAE(spec.bins, spec.frames, latent_dim=4, width=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # posterior collapse warnings of a 3-epoch toy
        history = train(
            model,
            DataLoader(TensorDataset(specs[2:]), batch_size=3),
            DataLoader(TensorDataset(specs[:2]), batch_size=2),
            load_config(run / "config.toml"),
            epochs=3,
            checkpoint_dir=run,
            resume_from=run / "last.pt",
        )
    old = MetricsHistory.load(RUN / "history.json")
    assert [e.epoch for e in history.epochs] == [0, 1, 2]
    assert history.epochs[:2] == old.epochs  # the old epochs are kept as they were
    written = json.loads((run / "history.json").read_text())
    assert [e["epoch"] for e in written["epoch_metrics"]] == [0, 1, 2]
    assert torch.isfinite(torch.tensor(history.epochs[2].val_loss))
