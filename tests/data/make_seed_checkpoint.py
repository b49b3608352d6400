"""Write a run folder as the seed's own ``train()`` writes one: the golden tests/data/seed_run/.

    .venv/bin/python tests/data/make_seed_checkpoint.py              # rewrites tests/data/seed_run/
    .venv/bin/python tests/data/make_seed_checkpoint.py --out DIR --mel-bins 16 --frames 64 ...   # other sizes

The seed is the project's ancestor, package ``distill`` (taylorbrook/Distill_SmallCorpusGenerativeAIAudio at
its phase-14 "multi-resolution loss" acceptance, commit bc9e441). What is reconstructed here, and from which
of its files:

- The classes a seed checkpoint pickles are defined below under their real module names, with the seed's
  fields, defaults and field order: ``distill.training.config`` (``OverfittingPreset``, ``RegularizationConfig``,
  ``ComplexSpectrogramConfig``, ``STFTLossConfig``, ``ReconLossConfig``, ``KLLossConfig``, ``LossConfig``,
  ``TrainingConfig``: src/distill/training/config.py), ``distill.audio.spectrogram.SpectrogramConfig``
  (src/distill/audio/spectrogram.py) and ``distill.training.metrics`` (``EpochMetrics``, ``StepMetrics``,
  ``MetricsHistory``: src/distill/training/metrics.py). Only their data is reconstructed, not their methods.
- The checkpoint (src/distill/training/checkpoint.py, ``save_checkpoint``): ``torch.save`` of a dict with
  ``version`` 1, ``epoch``, ``step`` (the seed passes 0), ``model_state_dict``, ``optimizer_state_dict``,
  ``scheduler_state_dict``, ``train_loss``, ``val_loss``, ``kl_weight``, ``training_config``,
  ``spectrogram_config``, ``metrics_history`` and ``latent_analysis`` (None for 2-channel models), written to
  ``checkpoints/checkpoint_epoch{NNNN}.pt`` with a ``.pt.meta.json`` sidecar (epoch, train and val loss).
- What ``train()`` hands it (src/distill/training/loop.py): ``training_config=asdict(config)`` and
  ``spectrogram_config=asdict(spec_config)``, so the nested loss configs arrive as dicts and tuples, and the
  one object left in the pickle is the ``OverfittingPreset`` enum member. ``metrics_history`` is
  ``MetricsHistory.to_dict()``; the seed's ``train()`` adds every epoch to it and never a step (steps go to
  the callback only), so ``step_metrics`` is empty. A checkpoint is saved every ``checkpoint_interval``
  epochs after epoch 0 and once more at the end (epoch ``max_epochs - 1``), keeping the 3 most recent plus
  the best. The seed writes no history.json, so none is written here.
- The loop: AdamW (``regularization.weight_decay``), ``CosineAnnealingLR(T_max=max_epochs)`` stepped once per
  epoch, the KL weight from ``get_kl_weight(epoch, max_epochs, kl.warmup_fraction, kl.weight_max)``, gradient
  clipping at ``regularization.gradient_clip_norm``, the seed's EpochMetrics fields and overfitting gap.
  Each step's loss is ``compute_combined_loss`` through this project's port of it (``distill_core.models``,
  which the seed's acceptance list checks) with this project's config built from the seed's.
- The model: the seed pickles only ``model.state_dict()``, never its ``ConvVAE`` class, so our port
  ``SpectrogramVAE`` stands in for it, tiny, on tiny spectrograms (the golden file stays small).

``--pickle-configs`` stores ``training_config``, ``spectrogram_config`` and ``metrics_history`` as the seed's
objects themselves instead of ``asdict``/``to_dict`` (what a script of one's own torch.save-ing the seed's
config writes): a checkpoint that pickles the seed's dataclasses.
"""

from __future__ import annotations

import argparse
import enum
import json
import math
import sys
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from torch.utils.data import DataLoader, TensorDataset

T = TypeVar("T")
GOLDEN = Path(__file__).parent / "seed_run"


def _seed_module(name: str) -> types.ModuleType:
    """The module ``name`` (and its parents) in sys.modules, so pickle finds the classes under the seed's names."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        dotted = ".".join(parts[:i])
        if dotted not in sys.modules:
            sys.modules[dotted] = types.ModuleType(dotted)
            if i > 1:
                setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], sys.modules[dotted])
    return sys.modules[name]


def seed_class(module: str) -> Callable[[T], T]:
    """Place a class in the seed's module ``module``, as the seed defined it there."""
    def place(cls: T) -> T:
        cls.__module__ = module  # type: ignore[attr-defined]
        setattr(_seed_module(module), cls.__name__, cls)  # type: ignore[attr-defined]
        return cls
    return place


CONFIG = "distill.training.config"


@seed_class(CONFIG)
class OverfittingPreset(enum.Enum):
    CONSERVATIVE = "conservative"
    BALANCED = "balanced"
    AGGRESSIVE = "aggressive"


@seed_class(CONFIG)
@dataclass
class RegularizationConfig:
    dropout: float = 0.2
    weight_decay: float = 0.01
    augmentation_expansion: int = 10
    gradient_clip_norm: float = 1.0


@seed_class(CONFIG)
@dataclass
class ComplexSpectrogramConfig:
    if_masking_threshold: float = 1e-5
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128


@seed_class(CONFIG)
@dataclass
class STFTLossConfig:
    weight: float = 1.0
    fft_sizes: tuple[int, ...] = (512, 1024, 2048)
    hop_sizes: tuple[int, ...] = (128, 256, 512)
    win_lengths: tuple[int, ...] = (512, 1024, 2048)


@seed_class(CONFIG)
@dataclass
class ReconLossConfig:
    weight: float = 0.1
    magnitude_weight: float = 1.0
    if_weight: float = 0.5


@seed_class(CONFIG)
@dataclass
class KLLossConfig:
    weight_max: float = 0.01
    warmup_fraction: float = 0.3
    free_bits: float = 0.1


@seed_class(CONFIG)
@dataclass
class LossConfig:
    stft: STFTLossConfig = field(default_factory=STFTLossConfig)
    reconstruction: ReconLossConfig = field(default_factory=ReconLossConfig)
    kl: KLLossConfig = field(default_factory=KLLossConfig)


@seed_class(CONFIG)
@dataclass
class TrainingConfig:
    latent_dim: int = 128
    batch_size: int = 32
    max_epochs: int = 200
    learning_rate: float = 1e-3
    kl_warmup_fraction: float = 0.3
    kl_weight_max: float = 0.01
    free_bits: float = 0.1
    val_fraction: float = 0.2
    chunk_duration_s: float = 1.0
    checkpoint_interval: int = 10
    preview_interval: int = 20
    preview_interval_short: int = 2
    max_checkpoints: int = 3
    preset: OverfittingPreset = OverfittingPreset.BALANCED
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    complex_spectrogram: ComplexSpectrogramConfig = field(default_factory=ComplexSpectrogramConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    device: str = "auto"
    num_workers: int = 0


@seed_class("distill.audio.spectrogram")
@dataclass
class SpectrogramConfig:
    sample_rate: int = 48_000
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    power: float = 2.0


METRICS = "distill.training.metrics"


@seed_class(METRICS)
@dataclass
class StepMetrics:
    epoch: int
    step: int
    total_steps: int
    train_loss: float
    recon_loss: float
    kl_loss: float
    kl_weight: float
    learning_rate: float
    step_time_s: float
    stft_loss: float = 0.0
    mag_recon_loss: float = 0.0
    if_recon_loss: float = 0.0


@seed_class(METRICS)
@dataclass
class EpochMetrics:
    epoch: int
    total_epochs: int
    train_loss: float
    val_loss: float
    val_recon_loss: float
    val_kl_loss: float
    kl_divergence: float
    overfitting_gap: float
    learning_rate: float
    eta_seconds: float
    elapsed_seconds: float
    val_stft_loss: float = 0.0
    val_mag_recon_loss: float = 0.0
    val_if_recon_loss: float = 0.0


@seed_class(METRICS)
@dataclass
class MetricsHistory:
    step_metrics: list[StepMetrics] = field(default_factory=list)
    epoch_metrics: list[EpochMetrics] = field(default_factory=list)


def seed_eta(history: MetricsHistory, current_epoch: int, total_epochs: int) -> float:
    """The seed's ETA: the latest epoch's elapsed time per epoch so far, times the epochs left."""
    if not history.epoch_metrics or current_epoch <= 0:
        return 0.0
    per_epoch = history.epoch_metrics[-1].elapsed_seconds / (current_epoch + 1)
    return max(0.0, per_epoch * (total_epochs - current_epoch - 1))


def write_seed_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """``checkpoint_epoch{NNNN}.pt`` and its ``.pt.meta.json`` sidecar, as the seed's save_checkpoint names them."""
    path = folder / f"checkpoint_epoch{state['epoch']:04d}.pt"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    meta = {"epoch": state["epoch"], "train_loss": float(state["train_loss"]), "val_loss": float(state["val_loss"])}
    path.with_suffix(".pt.meta.json").write_text(json.dumps(meta, indent=2))
    return path


def keep_recent_and_best(folder: Path, max_recent: int) -> None:
    """The seed's retention: the ``max_recent`` latest checkpoints and the one with the lowest val_loss."""
    found = sorted(folder.glob("checkpoint_epoch*.pt"))
    metas = {p: json.loads(p.with_suffix(".pt.meta.json").read_text()) for p in found}
    if len(found) <= max_recent:
        return
    keep = set(found[-max_recent:]) | {min(found, key=lambda p: metas[p]["val_loss"])}
    for p in found:
        if p not in keep:
            p.unlink()
            p.with_suffix(".pt.meta.json").unlink()


def seed_run(out: Path, config: TrainingConfig, spectrogram: Any, *, clips: int, width: int,
             pickle_configs: bool = False) -> list[Path]:
    """Train as the seed's train() does and write its checkpoints under ``out/checkpoints``."""
    from distill_core import load_config
    from distill_core.models import create_stft_loss, get_kl_weight
    from distill_core.training import train_epoch, validate_epoch
    from distill_core.training.audio import synthetic_corpus
    from distill_core.training.model import SpectrogramVAE
    from distill_core.training.spectrogram import to_spectrogram

    torch.manual_seed(0)
    specs = to_spectrogram(synthetic_corpus(clips, spectrogram.samples, spectrogram.sample_rate, seed=0), spectrogram)
    n_val = max(1, int(clips * config.val_fraction))
    train_loader = DataLoader(TensorDataset(specs[n_val:]), batch_size=config.batch_size, shuffle=True)
    val_loader = DataLoader(TensorDataset(specs[:n_val]), batch_size=config.batch_size)
    model = SpectrogramVAE(spectrogram.bins, spectrogram.frames, latent_dim=config.latent_dim, width=width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.regularization.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    loss_config = load_config(asdict(config.loss))  # our port's config, equal to the seed's
    stft_loss_fn = create_stft_loss(loss_config, "cpu")
    history = MetricsHistory()
    folder = out / "checkpoints"
    seed_spectrogram = SpectrogramConfig()  # the seed's own mel settings, saved beside its training config
    began = time.time()

    def save(epoch: int, train_loss: float, val_loss: float, kl_weight: float) -> None:
        write_seed_checkpoint(folder, {
            "version": 1, "epoch": epoch, "step": 0, "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(), "scheduler_state_dict": scheduler.state_dict(),
            "train_loss": train_loss, "val_loss": val_loss, "kl_weight": kl_weight,
            "training_config": config if pickle_configs else asdict(config),
            "spectrogram_config": seed_spectrogram if pickle_configs else asdict(seed_spectrogram),
            "metrics_history": history if pickle_configs else asdict(history), "latent_analysis": None})
        keep_recent_and_best(folder, config.max_checkpoints)

    for epoch in range(config.max_epochs):
        kl_weight = get_kl_weight(epoch, config.max_epochs, config.loss.kl.warmup_fraction,
                                  kl_weight_max=config.loss.kl.weight_max)
        trained = train_epoch(model, train_loader, optimizer, kl_weight, "cpu",
                              config.regularization.gradient_clip_norm, loss_config, stft_loss_fn, epoch)
        validated = validate_epoch(model, val_loader, kl_weight, "cpu", loss_config, stft_loss_fn)
        scheduler.step()
        t_loss, v_loss = trained["train_loss"], validated["val_loss"]
        gap = (v_loss - t_loss) / t_loss if t_loss > 0 and not math.isnan(t_loss) else 0.0
        history.epoch_metrics.append(EpochMetrics(
            epoch=epoch, total_epochs=config.max_epochs, train_loss=t_loss, val_loss=v_loss,
            val_recon_loss=validated["val_recon_loss"], val_kl_loss=validated["val_kl_loss"],
            kl_divergence=validated["kl_divergence"], overfitting_gap=gap,
            learning_rate=optimizer.param_groups[0]["lr"], eta_seconds=seed_eta(history, epoch, config.max_epochs),
            elapsed_seconds=time.time() - began, val_stft_loss=validated.get("val_stft_loss", 0.0),
            val_mag_recon_loss=validated.get("val_mag_recon_loss", 0.0),
            val_if_recon_loss=validated.get("val_if_recon_loss", 0.0)))
        if config.checkpoint_interval > 0 and epoch > 0 and epoch % config.checkpoint_interval == 0:
            save(epoch, t_loss, v_loss, kl_weight)
    last = history.epoch_metrics[-1]
    final = config.max_epochs - 1
    save(final, last.train_loss, last.val_loss, get_kl_weight(final, config.max_epochs, config.loss.kl.warmup_fraction,
                                                              kl_weight_max=config.loss.kl.weight_max))
    return sorted(folder.glob("checkpoint_epoch*.pt"))


def main(argv: list[str] | None = None) -> None:
    from distill_core.training.spectrogram import SpectrogramConfig as OurSpectrogram

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GOLDEN)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--sample-rate", type=int, default=8000)
    parser.add_argument("--n-fft", type=int, default=64)
    parser.add_argument("--hop", type=int, default=16)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--mel-bins", type=int, default=None)
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--pickle-configs", action="store_true")
    args = parser.parse_args(argv)
    spectrogram = OurSpectrogram(sample_rate=args.sample_rate, n_fft=args.n_fft, hop=args.hop, frames=args.frames,
                                 mel_bins=args.mel_bins)
    # A seed user's run on a small corpus: the seed's get_adaptive_config for < 10 files (the conservative
    # preset, half held out), a checkpoint every epoch, and a loss tuned away from the defaults, with STFT
    # resolutions that fit a tiny flattened magnitude.
    config = TrainingConfig(
        latent_dim=args.latent_dim, batch_size=4, max_epochs=args.epochs, learning_rate=5e-4, kl_warmup_fraction=0.5,
        val_fraction=0.5, checkpoint_interval=1, preset=OverfittingPreset.CONSERVATIVE,
        regularization=RegularizationConfig(dropout=0.4, weight_decay=0.05, augmentation_expansion=15,
                                            gradient_clip_norm=0.5),
        loss=LossConfig(stft=STFTLossConfig(fft_sizes=(16, 32, 64), hop_sizes=(4, 8, 16), win_lengths=(16, 32, 64)),
                        reconstruction=ReconLossConfig(weight=0.2, magnitude_weight=1.0, if_weight=0.5),
                        kl=KLLossConfig(weight_max=0.02, warmup_fraction=0.5, free_bits=0.2)),
        device="cpu")
    written = seed_run(args.out, config, spectrogram, clips=args.clips, width=args.width,
                       pickle_configs=args.pickle_configs)
    print("\n".join(str(p) for p in written))


if __name__ == "__main__":
    main()
