"""The demo run: data, spectrograms, the VAE, training with a progress bar, and the run folder."""

from __future__ import annotations

from pathlib import Path

import attrs
import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import __version__
from ..atomic import atomic_write_text
from ..combined import CombinedLoss
from ..config import ConfigError
from ..lock import write_lock
from ..loss_config import LossConfig, dumps_config, load_config
from .audio import AudioError, synthetic_corpus, wav_corpus, write_wav
from .loop import train
from .metrics import EpochMetrics, MetricsHistory, StepMetrics
from .model import SpectrogramVAE
from .plots import plot_losses
from .spectrogram import SpectrogramConfig, from_spectrogram, save_spectrogram_config, to_spectrogram
from .tensorboard import demo_logger, loss_hparams


@attrs.define
class DemoSettings:
    """What ``distill-loss train`` and ``make demo`` run."""

    name: str = "demo"
    out: Path = Path("runs")
    epochs: int = 20
    data: Path | None = None
    config: Path | None = None
    clips: int = 96
    batch_size: int = 16
    lr: float = 2e-3
    seed: int = 0
    samples: int = 3
    device: str = "cpu"
    resume: Path | None = None
    spectrogram: SpectrogramConfig = SpectrogramConfig()
    tensorboard: bool = True


def _progress(total: int, enabled: bool):
    from ..extras import require

    tqdm = require("tqdm.auto", "distill-loss train").tqdm
    bar = tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True)
    last = {"step": 0}

    def callback(metrics: StepMetrics | EpochMetrics) -> None:
        if isinstance(metrics, StepMetrics):
            shown = {"total": metrics.train_loss, "stft": metrics.stft_loss, "mag": metrics.mag_recon_loss,
                     "if": metrics.if_recon_loss, "kl": metrics.kl_loss,
                     **{k.removesuffix("_loss"): v for k, v in metrics.components.items()}}
            bar.set_description(f"epoch {metrics.epoch + 1}")
            bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
            bar.update(metrics.step - last["step"])
            last["step"] = 0 if metrics.step >= metrics.total_steps else metrics.step
        else:
            bar.write(f"epoch {metrics.epoch + 1}/{metrics.total_epochs}: train {metrics.train_loss:.4f}  "
                      f"val {metrics.val_loss:.4f}  (stft {metrics.val_stft_loss:.3f}, mag "
                      f"{metrics.val_mag_recon_loss:.3f}, if {metrics.val_if_recon_loss:.3f}, "
                      f"kl {metrics.val_kl_loss:.3f})")

    return bar, callback


def run_demo(settings: DemoSettings, progress: bool = True) -> Path:
    """Train the demo VAE and write runs/<name>/: history.json, config.toml, lock.json, losses.png, WAVs."""
    if settings.epochs < 1:
        raise ConfigError([("epochs", f"expected at least 1 epoch, got {settings.epochs}")])
    mel = settings.spectrogram.mel_bins
    if mel is not None and (mel < 16 or mel % 16 or mel > settings.spectrogram.n_fft // 2):
        raise ConfigError([("--mel-bins", f"expected a multiple of 16 between 16 and "
                                          f"{settings.spectrogram.n_fft // 2} (the model halves it 4 times), got {mel}")])
    torch.manual_seed(settings.seed)
    spec = settings.spectrogram
    if settings.data is not None:
        waves = wav_corpus(Path(settings.data), spec.samples, spec.sample_rate)
    else:
        waves = synthetic_corpus(settings.clips, spec.samples, spec.sample_rate, seed=settings.seed)
    if waves.shape[0] < 2:
        raise AudioError(f"{settings.data}: only {waves.shape[0]} clip of {spec.samples} samples; expected at "
                         "least 2 (one to train, one to validate)")
    config = load_config(settings.config) if settings.config is not None else LossConfig()
    loss = CombinedLoss(config)
    specs = to_spectrogram(waves, spec)
    n_val = max(min(settings.samples, waves.shape[0] // 2), waves.shape[0] // 8, 1)
    train_set, val_set = TensorDataset(specs[n_val:]), TensorDataset(specs[:n_val])
    train_loader = DataLoader(train_set, batch_size=settings.batch_size, shuffle=True, drop_last=False)
    val_loader = DataLoader(val_set, batch_size=settings.batch_size)
    model = SpectrogramVAE(spec.bins, spec.frames)

    run_dir = Path(settings.out) / settings.name
    run_dir.mkdir(parents=True, exist_ok=True)
    versions = ", ".join(f"{n} = {p}" for n, p in loss.provenance.items())
    atomic_write_text(run_dir / "config.toml", f"# resolved loss config, distill-core {__version__}; plugins: "
                                               f"{versions}\n" + dumps_config(config, ".toml"))
    write_lock(run_dir / "lock.json", loss)
    save_spectrogram_config(spec, run_dir / "spectrogram.json")

    bar, callback = _progress(len(train_loader) * settings.epochs, progress)
    board = demo_logger(run_dir, settings, (run_dir / "config.toml").read_text(encoding="utf-8"),
                        loss_hparams(config), model, val_set.tensors[0][: settings.samples])
    try:
        history = train(model, train_loader, val_loader, loss, epochs=settings.epochs, lr=settings.lr,
                        device=settings.device, callbacks=[callback, *([board] if board else [])], log_interval=2,
                        checkpoint_dir=run_dir, resume_from=settings.resume)
    finally:
        bar.close()
        if board:
            board.close()
    plot_losses(history, run_dir / "losses.png")

    model.eval()
    with torch.no_grad():
        originals = val_set.tensors[0][: settings.samples]
        recon, _, _ = model(originals.to(settings.device))
        for i, (a, b) in enumerate(zip(from_spectrogram(originals, spec), from_spectrogram(recon.cpu(), spec))):
            write_wav(run_dir / "samples" / f"{i:02d}_original.wav", a, spec.sample_rate)
            write_wav(run_dir / "samples" / f"{i:02d}_reconstruction.wav", b, spec.sample_rate)
    return run_dir
