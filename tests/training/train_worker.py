"""Run by tests/training/test_durability.py: a small training run that can be interrupted and resumed."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from distill_core import LossConfig
from distill_core.training.audio import synthetic_corpus
from distill_core.training.loop import train
from distill_core.training.metrics import StepMetrics
from distill_core.training.model import SpectrogramVAE
from distill_core.training.spectrogram import SpectrogramConfig, to_spectrogram

SPEC = SpectrogramConfig(sample_rate=8000, n_fft=128, hop=32, frames=32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--markers", type=Path)
    args = parser.parse_args()
    # Ctrl-C raises KeyboardInterrupt even when this process was started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    specs = to_spectrogram(synthetic_corpus(36, SPEC.samples, SPEC.sample_rate), SPEC)
    train_loader = DataLoader(TensorDataset(specs[4:]), batch_size=8, shuffle=True)
    val_loader = DataLoader(TensorDataset(specs[:4]), batch_size=8)
    model = SpectrogramVAE(SPEC.bins, SPEC.frames, latent_dim=8, width=8)

    def marker(metrics):
        if args.markers is not None and isinstance(metrics, StepMetrics):
            (args.markers / f"epoch{metrics.epoch}_step{metrics.step}").touch()
            time.sleep(0.3)  # leave time for a signal to land mid-epoch

    train(
        model,
        train_loader,
        val_loader,
        LossConfig(),
        epochs=args.epochs,
        checkpoint_dir=args.out,
        resume_from=args.resume,
        callbacks=[marker],
        log_interval=1,
    )


if __name__ == "__main__":
    main()
