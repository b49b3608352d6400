"""The demo VAE's run: data, spectrograms, the VAE, training with a progress bar, and the run folder.

What every demo model's run shares (settings, their errors, the device, the run folder) is ``demo_run``'s; its
names stay importable from here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from distill_core.config.converter import ConfigError
from distill_core.files.atomic import file_in_the_way
from distill_core.loss.combined import CombinedLoss
from distill_core.loss.config import LossConfig, batch_problems, load_config
from distill_core.registry.provenance import term_origins
from distill_core.seed.adapter import VAEAdapter
from distill_core.training.audio import AudioError, WavCorpus, read_wav_corpus, synthetic_corpus, write_wav
from distill_core.training.demo_run import (
    RUN_FILES,
    DemoSettings,
    NothingTrainedError,
    RunExistsError,
    SettingsError,
    _check_run_folder,
    _check_something_trained,
    check_run_options,
    open_run_folder,
    resolve_device,
    train_demo_run,
    use_threads,
)
from distill_core.training.model import SpectrogramVAE
from distill_core.training.plots import plot_losses
from distill_core.training.resume import check_resume
from distill_core.training.run_lock import RunFolderLock
from distill_core.training.spectrogram import (
    SpectrogramConfig,
    WaveformViews,
    from_spectrogram,
    save_spectrogram_config,
    to_spectrogram,
)
from distill_core.training.tensorboard import demo_logger, loss_hparams

__all__ = [
    "RUN_FILES",
    "DemoSettings",
    "NothingTrainedError",
    "RunExistsError",
    "SettingsError",
    "open_run_folder",
    "resolve_device",
    "run_demo",
    "train_demo_run",
]


def _check_resume(settings: DemoSettings, model: torch.nn.Module, loss: CombinedLoss) -> tuple[list[str], int]:
    """Check the checkpoint to resume from against this model and loss: (accepted loss changes, next epoch)."""
    assert settings.resume is not None
    resume = check_resume(
        settings.resume,
        model,
        loss,
        accept=settings.force_config,
        how_to_accept="--force-config",
        saved_config=Path(settings.resume).parent / "config.toml",
        model_hint=" (the same --mel-bins)",
    )
    return resume.changes, resume.state["epoch"] + 1


def _config_path(settings: DemoSettings) -> Path | None:
    """The loss config to use: the one given, else a resumed run's own config.toml, else None (the recipe)."""
    if settings.config is not None or settings.resume is None:
        return settings.config
    saved = Path(settings.resume).parent / "config.toml"
    return saved if saved.is_file() else None


def _data_summary(corpus: WavCorpus, folder: Path, spec: SpectrogramConfig, n_val: int) -> str:
    files = (
        f"{corpus.files_used} of {corpus.files_found}"
        if corpus.files_used < corpus.files_found
        else f"all {corpus.files_found}"
    )
    n = corpus.clips.shape[0]
    return (
        f"data: {n} clips of {spec.samples / spec.sample_rate:.2f} s at {spec.sample_rate} Hz from {files} "
        f".wav files in {folder}; {n - n_val} to train, {n_val} to validate"
    )


def run_demo(settings: DemoSettings, progress: bool = True, notify: Callable[[str], None] | None = None) -> Path:
    """Train the demo VAE and write runs/<name>/: history.json, config.toml, lock.json, run.json, losses.png, WAVs.

    Every setting, the config, the data and the checkpoint to resume from are checked before anything
    is written; a folder holding another run is never replaced without ``overwrite``, and one process at
    a time writes a run folder (RunBusyError names the other). ``notify`` gets one-line notes for the user
    (the data used, temporaries of a killed save removed). A run whose every step was non-finite raises
    NothingTrainedError after its files are written. A resume whose settings differ from the run's run.json
    is refused unless ``change_options`` (``check_run_options``).
    """
    say = notify or (lambda message: None)
    if settings.epochs < 1:
        raise SettingsError(f"--epochs: expected at least 1 epoch, got {settings.epochs}")
    mel = settings.spectrogram.mel_bins
    if mel is not None and (mel < 16 or mel % 16 or mel > settings.spectrogram.n_fft // 2):
        raise SettingsError(
            f"--mel-bins: expected a multiple of 16 between 16 and "
            f"{settings.spectrogram.n_fft // 2} (the model halves it 4 times), got {mel}"
        )
    blocking = file_in_the_way(settings.out)
    if blocking is not None:
        raise SettingsError(
            f"--out {settings.out}: {blocking} is a file, so the runs folder cannot be created there; expected a folder"
        )
    option_changes = check_run_options(settings, "vae")
    use_threads(settings)
    device = resolve_device(settings.device)
    config_path = _config_path(settings)
    if config_path is not None and settings.config is None:
        say(f"config: {config_path} (the resumed run's own; give a CONFIG to use another)")
    with term_origins(lock=settings.resume):  # a resumed run's checkpoint knows where its terms came from
        config = load_config(config_path) if config_path is not None else LossConfig()
    torch.manual_seed(settings.seed)  # first: --seed covers the loss's parameters (a discriminator's) too
    loss = CombinedLoss(config)
    spec = settings.spectrogram
    corpus = None
    if settings.data is not None:
        corpus = read_wav_corpus(Path(settings.data), spec.samples, spec.sample_rate)
        waves = corpus.clips
    else:
        waves = synthetic_corpus(settings.clips, spec.samples, spec.sample_rate, seed=settings.seed)
    if waves.shape[0] < 2:
        raise AudioError(
            f"{settings.data}: only {waves.shape[0]} clip of {spec.samples} samples; expected at "
            "least 2 (one to train, one to validate)"
        )
    views = WaveformViews(spec)
    adapter = VAEAdapter(views)
    problems = batch_problems(config, adapter.provides(), adapter.carries_gradient(), who="distill-loss train")
    if problems:  # before anything is written
        raise ConfigError(problems, str(config_path) if config_path is not None else None)
    specs = to_spectrogram(waves, spec)
    n_val = max(min(settings.samples, waves.shape[0] // 2), waves.shape[0] // 8, 1)
    if corpus is not None and settings.data is not None:  # corpus: read from settings.data
        say(_data_summary(corpus, Path(settings.data), spec, n_val))
    train_set, val_set = TensorDataset(specs[n_val:]), TensorDataset(specs[:n_val])
    train_loader = DataLoader(train_set, batch_size=settings.batch_size, shuffle=True, drop_last=False)
    val_loader = DataLoader(val_set, batch_size=settings.batch_size)
    model = SpectrogramVAE(spec.bins, spec.frames)
    run_dir = Path(settings.out) / settings.name
    changes, start = _check_resume(settings, model, loss) if settings.resume is not None else ([], 0)
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
        model="vae",
        option_changes=option_changes,
    ):
        save_spectrogram_config(spec, run_dir / "spectrogram.json")

        history = train_demo_run(
            model,
            train_loader,
            val_loader,
            loss,
            settings,
            run_dir,
            device,
            progress,
            lambda: demo_logger(
                run_dir,
                settings,
                (run_dir / "config.toml").read_text(encoding="utf-8"),
                loss_hparams(config),
                model,
                val_set.tensors[0][: settings.samples],
            ),
            lr=settings.lr,
            views=views,
        )
        plot_losses(history, run_dir / "losses.png")

        model.eval()
        with torch.no_grad():
            originals = val_set.tensors[0][: settings.samples]
            recon, _, _ = model(originals.to(device))
            for i, (a, b) in enumerate(zip(from_spectrogram(originals, spec), from_spectrogram(recon.cpu(), spec))):
                write_wav(run_dir / "samples" / f"{i:02d}_original.wav", a, spec.sample_rate)
                write_wav(run_dir / "samples" / f"{i:02d}_reconstruction.wav", b, spec.sample_rate)
        _check_something_trained(history, start, len(train_loader), run_dir)
        return run_dir
