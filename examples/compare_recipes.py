"""Train the demo VAE twice on the same data for the same epochs, with the seed's recipe (CombinedLoss) and
with the legacy MSE + KL ``vae_loss``, then compare both on held-out audio with ``distill-loss compare``.

    python examples/compare_recipes.py --out runs/recipes --epochs 20 --held-out /usr/share/sounds/alsa

The legacy run goes through the same ``train`` loop with ``loss_config=None`` (the legacy loss), on the very
split ``run_demo`` makes, so the two runs differ in the loss alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from distill_core.training.audio import synthetic_corpus, write_wav
from distill_core.training.compare import compare_runs, markdown, write_comparison
from distill_core.training.loop import train
from distill_core.training.model import SpectrogramVAE
from distill_core.training.run import DemoSettings, run_demo
from distill_core.training.spectrogram import SpectrogramConfig, save_spectrogram_config, to_spectrogram


def legacy_run(settings: DemoSettings) -> Path:
    """run_demo's data, split, model and optimiser settings, trained with the legacy vae_loss."""
    torch.manual_seed(settings.seed)
    spec = settings.spectrogram
    waves = synthetic_corpus(settings.clips, spec.samples, spec.sample_rate, seed=settings.seed)
    specs = to_spectrogram(waves, spec)
    n_val = max(min(settings.samples, waves.shape[0] // 2), waves.shape[0] // 8, 1)
    train_loader = DataLoader(TensorDataset(specs[n_val:]), batch_size=settings.batch_size, shuffle=True)
    val_loader = DataLoader(TensorDataset(specs[:n_val]), batch_size=settings.batch_size)
    run_dir = Path(settings.out) / settings.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text("# legacy vae_loss: MSE + free-bits KL (weight 1.0), no CombinedLoss\n")
    save_spectrogram_config(spec, run_dir / "spectrogram.json")
    train(
        SpectrogramVAE(spec.bins, spec.frames),
        train_loader,
        val_loader,
        None,
        epochs=settings.epochs,
        lr=settings.lr,
        device=settings.device,
        checkpoint_dir=run_dir,
    )
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--clips", type=int, default=96, help="synthetic training clips")
    parser.add_argument("--held-out", type=Path, help="WAV folder (default: 24 synthetic clips of another seed)")
    args = parser.parse_args()
    common = dict(out=args.out, epochs=args.epochs, clips=args.clips, seed=0, tensorboard=False)
    recipe = run_demo(DemoSettings(name="recipe", **common), progress=False)
    legacy = legacy_run(DemoSettings(name="legacy_mse", **common))
    held_out = args.held_out
    if held_out is None:
        held_out = args.out / "held_out"
        spec = SpectrogramConfig()
        for i, clip in enumerate(synthetic_corpus(24, spec.samples, spec.sample_rate, seed=12345)):
            write_wav(held_out / f"{i:02d}.wav", clip, spec.sample_rate)
    comparison = compare_runs([recipe, legacy], held_out)
    write_comparison(comparison, args.out / f"compare_{held_out.name}", force=True)
    print(markdown(comparison))


if __name__ == "__main__":
    main()
