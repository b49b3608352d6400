"""``distill-loss train --model vocoder``: the demo vocoder through train(), on random segments of WAV files.

The run folder holds what ``distill-loss compare`` needs to rebuild and score the model: vocoder.json (the
model's settings), best.pt and last.pt, config.toml, lock.json and history.json; beside them losses.png,
TensorBoard events and samples/*.wav (validation segments next to their reconstructions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch.utils.data import DataLoader, RandomSampler

from distill_core.config.converter import ConfigError
from distill_core.files.atomic import file_in_the_way
from distill_core.loss.combined import CombinedLoss
from distill_core.loss.config import LossConfig, batch_problems, load_config
from distill_core.registry.provenance import term_origins
from distill_core.training.audio import synthetic_corpus, write_wav
from distill_core.training.demo_run import (
    DemoSettings,
    SettingsError,
    _check_run_folder,
    _check_something_trained,
    check_run_options,
    open_run_folder,
    resolve_device,
    train_demo_run,
    use_threads,
)
from distill_core.training.plots import plot_losses
from distill_core.training.resume import check_resume
from distill_core.training.run_lock import RunFolderLock
from distill_core.training.segments import WavSegments, load_waves
from distill_core.training.tensorboard import TensorBoardLogger, loss_hparams, tensorboard_available
from distill_core.training.vocoder import (
    VOCODER_FILE,
    Vocoder,
    VocoderAdapter,
    VocoderConfig,
    load_vocoder_config,
    save_vocoder_config,
)

WHO = "distill-loss train --model vocoder"
TRAIN_INDICES = 1_000_000  # segment indices drawn for training; validation's seed starts past them


@attrs.frozen
class VocoderTraining:
    """What a vocoder run adds to DemoSettings: the model, the segment length, validation, AdamW's betas."""

    vocoder: VocoderConfig = VocoderConfig()
    segment: int = 8192  # samples per training and validation segment (0.51 s at 16 kHz), a multiple of the hop
    val_segments: int = 8  # fixed segments (another seed) that validate every epoch and pick best.pt
    betas: tuple[float, float] = (0.8, 0.99)  # HiFi-GAN's AdamW betas


def default_loss(sample_rate: int) -> dict[str, Any]:
    """The loss a vocoder run uses when given no config: DAC's multi-scale mel on the waveforms."""
    waves = {"recon": "recon_wave", "target": "target_wave"}
    return {"recipe": "none", "terms": {"mel": {"sample_rate": sample_rate, "inputs": waves}}}


def _check_settings(settings: DemoSettings, training: VocoderTraining) -> None:
    """What cannot work with the vocoder, named by its flag, before anything is read or written."""
    if settings.epochs < 1:
        raise SettingsError(f"--epochs: expected at least 1 epoch, got {settings.epochs}")
    if settings.spectrogram.mel_bins is not None:
        raise SettingsError(
            f"--mel-bins {settings.spectrogram.mel_bins}: applies to --model vae only (the vocoder "
            f"reads {training.vocoder.mel_bins} log-mel bands of its own)"
        )
    hop = training.vocoder.hop
    if training.segment < hop or training.segment % hop:
        raise SettingsError(f"segment: {training.segment} samples; expected a multiple of the vocoder's hop ({hop})")
    blocking = file_in_the_way(settings.out)
    if blocking is not None:
        raise SettingsError(
            f"--out {settings.out}: {blocking} is a file, so the runs folder cannot be created there; expected a folder"
        )


def _config_path(settings: DemoSettings) -> Path | None:
    """The config given, else a resumed run's own config.toml, else None (the default loss)."""
    if settings.config is not None or settings.resume is None:
        return settings.config
    saved = Path(settings.resume).parent / "config.toml"
    return saved if saved.is_file() else None


def _segments(
    settings: DemoSettings, training: VocoderTraining, sample_rate: int, say: Callable[[str], None]
) -> tuple[WavSegments, WavSegments]:
    """Training segments (drawn afresh each epoch by the sampler) and fixed validation segments."""
    length, seed = training.segment, settings.seed
    if settings.data is not None:
        folder = Path(settings.data)
        waves = load_waves(folder, sample_rate)  # read once, for both
        seconds = sum(w.shape[-1] for w in waves) / sample_rate
        say(
            f"data: {len(waves)} .wav files in {folder} ({seconds:.1f} s at {sample_rate} Hz); each epoch "
            f"trains on {settings.clips} random segments of {length / sample_rate:.2f} s and validates on "
            f"{training.val_segments} fixed ones"
        )
    else:
        waves = list(synthetic_corpus(settings.clips, 2 * length, sample_rate, seed=seed))
    return (
        WavSegments.of_waves(waves, length, count=TRAIN_INDICES, seed=seed),
        WavSegments.of_waves(waves, length, count=training.val_segments, seed=seed + 1),
    )


def _optimizer(model: Vocoder, lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    """AdamW, fused where torch has the kernel (it then skips a non-finite step without a host sync)."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, fused=True)
    except RuntimeError:  # a device without the fused kernel
        return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas)


def _logger(
    run_dir: Path, settings: DemoSettings, config: LossConfig, model: Vocoder, originals: torch.Tensor
) -> TensorBoardLogger | None:
    """TensorBoard events with the validation segments' audio and log-mel images, when installed and wanted."""
    if not settings.tensorboard or not tensorboard_available():
        return None

    @torch.no_grad()
    def samples() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        mel = model.mel(originals.to(device))
        recon = model(mel)
        model.train(was_training)
        return originals[:, 0], recon[:, 0].cpu(), mel[:, None].cpu(), model.mel(recon)[:, None].cpu()

    hparams = {
        "model": "vocoder",
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "seed": settings.seed,
        "data": str(settings.data or "synthetic"),
        **loss_hparams(config),
    }
    return TensorBoardLogger(
        run_dir,
        config_text=(run_dir / "config.toml").read_text(encoding="utf-8"),
        hparams=hparams,
        samples=samples,
        sample_rate=model.config.sample_rate,
    )


def run_vocoder(
    settings: DemoSettings,
    progress: bool = True,
    notify: Callable[[str], None] | None = None,
    training: VocoderTraining = VocoderTraining(),
) -> Path:
    """Train the demo vocoder and write runs/<name>/, as run_demo does for the VAE.

    From ``settings``: name, out, epochs, data (a folder of WAVs; without it, ``clips`` generated clips),
    config (default: ``default_loss``), clips (segments per epoch), batch_size, lr, seed, samples, device,
    resume, overwrite, force_config, tensorboard, threads and change_options. Everything is checked before
    anything is written (a resume's settings against its run.json, as for the VAE); a
    folder holding another run is kept unless ``overwrite``. A resumed run keeps its own vocoder.json.
    """
    say = notify or (lambda message: None)
    _check_settings(settings, training)
    option_changes = check_run_options(settings, "vocoder")
    use_threads(settings)
    device = resolve_device(settings.device)
    config_path = _config_path(settings)
    if config_path is not None and settings.config is None:
        say(f"config: {config_path} (the resumed run's own; give a CONFIG to use another)")
    with term_origins(lock=settings.resume):
        config = (
            load_config(config_path)
            if config_path is not None
            else load_config(default_loss(training.vocoder.sample_rate))
        )
    adapter = VocoderAdapter()
    problems = batch_problems(config, adapter.provides(), adapter.carries_gradient(), who=WHO)
    if problems and set(LossConfig().terms) <= set(config.terms):
        problems.append(
            (
                "recipe",
                "the VAE recipe's terms are in the config (the default recipe, merged in when a "
                'file names none); a vocoder config starts with recipe = "none"',
            )
        )
    if problems:  # before anything is written
        raise ConfigError(problems, str(config_path) if config_path is not None else None)
    saved_model = Path(settings.resume).parent / VOCODER_FILE if settings.resume is not None else None
    vocoder_config = (
        load_vocoder_config(saved_model) if saved_model is not None and saved_model.is_file() else training.vocoder
    )
    torch.manual_seed(settings.seed)
    loss = CombinedLoss(config)
    train_set, val_set = _segments(settings, training, vocoder_config.sample_rate, say)
    sampler = RandomSampler(train_set, replacement=True, num_samples=settings.clips)  # fresh segments every epoch
    train_loader = DataLoader(train_set, batch_size=settings.batch_size, sampler=sampler)
    val_loader = DataLoader(val_set, batch_size=settings.batch_size)
    model = Vocoder(vocoder_config).to(device)
    run_dir = Path(settings.out) / settings.name
    changes, start = [], 0
    if settings.resume is not None:
        saved_config = Path(settings.resume).parent / "config.toml"
        resume = check_resume(
            settings.resume,
            model,
            loss,
            accept=settings.force_config,
            how_to_accept="--force-config",
            saved_config=saved_config,
        )
        changes, start = resume.changes, resume.state["epoch"] + 1
    if run_dir.is_dir():
        RunFolderLock(run_dir).check_free()  # a run in progress is named before anything else is said of it
    _check_run_folder(run_dir, settings)

    # Nothing was written above this line, but for the run folder itself, which holds the lock.
    with open_run_folder(
        run_dir,
        settings,
        changes=changes,
        start=start,
        config=config,
        loss=loss,
        say=say,
        what=" of a vocoder run",
        model="vocoder",
        option_changes=option_changes,
    ):
        save_vocoder_config(vocoder_config, run_dir / VOCODER_FILE)

        originals = torch.stack([val_set[i] for i in range(min(settings.samples, len(val_set)))])
        history = train_demo_run(
            model,
            train_loader,
            val_loader,
            loss,
            settings,
            run_dir,
            device,
            progress,
            lambda: _logger(run_dir, settings, config, model, originals),
            optimizer=_optimizer(model, settings.lr, training.betas),
            adapter=adapter,
            unmeasured=math.nan,  # the seed's VAE fields (val_kl_loss, ...) it never computes: NaN, not 0.0
        )
        plot_losses(history, run_dir / "losses.png")
        _write_samples(model, originals, run_dir / "samples")
        _check_something_trained(history, start, len(train_loader), run_dir)
        return run_dir


@torch.no_grad()
def _write_samples(model: Vocoder, originals: torch.Tensor, folder: Path) -> None:
    """Each validation segment and the trained model's reconstruction of it, as 16-bit WAVs."""
    model.eval()
    recon = model(model.mel(originals.to(next(model.parameters()).device))).cpu()
    for i, (a, b) in enumerate(zip(originals[:, 0], recon[:, 0])):
        write_wav(folder / f"{i:02d}_original.wav", a, model.config.sample_rate)
        write_wav(folder / f"{i:02d}_reconstruction.wav", b, model.config.sample_rate)
