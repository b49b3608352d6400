"""The demo run: data, spectrograms, the VAE, training with a progress bar, and the run folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import torch
from torch.utils.data import DataLoader, TensorDataset

from distill_core import __version__
from distill_core.config.converter import ConfigError
from distill_core.files.atomic import atomic_write_text, file_in_the_way
from distill_core.loss.combined import CombinedLoss
from distill_core.loss.config import LossConfig, batch_problems, dumps_config, load_config
from distill_core.loss.lockfile import write_lock
from distill_core.registry.provenance import term_origins
from distill_core.seed.adapter import VAEAdapter
from distill_core.training.audio import AudioError, WavCorpus, read_wav_corpus, synthetic_corpus, write_wav
from distill_core.training.loop import train
from distill_core.training.metrics import EpochMetrics, MetricsHistory, StepMetrics
from distill_core.training.model import SpectrogramVAE
from distill_core.training.plots import plot_losses
from distill_core.training.progress import console_values, epoch_line
from distill_core.training.resume import check_resume
from distill_core.training.run_lock import RunFolderLock
from distill_core.training.spectrogram import (
    SpectrogramConfig,
    WaveformViews,
    from_spectrogram,
    save_spectrogram_config,
    to_spectrogram,
)
from distill_core.training.tensorboard import TensorBoardLogger, demo_logger, loss_hparams
from distill_core.util.extras import require


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
    overwrite: bool = False  # replace a run already in the run folder
    force_config: bool = False  # resume with a changed loss: a new best-tracking segment
    tensorboard: bool = True


def _progress(total: int, enabled: bool) -> tuple[Any, Callable[[StepMetrics | EpochMetrics], None]]:

    tqdm = require("tqdm.auto", "distill-loss train").tqdm
    bar = tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True)
    last = {"step": 0}

    def callback(metrics: StepMetrics | EpochMetrics) -> None:
        if isinstance(metrics, StepMetrics):
            shown = {"total": metrics.train_loss, **console_values(metrics)}
            bar.set_description(f"epoch {metrics.epoch + 1}")
            bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
            done = metrics.step + 1  # steps are counted from 0, as the seed counts them
            bar.update(done - last["step"])
            last["step"] = 0 if done >= metrics.total_steps else done
        else:
            bar.write(epoch_line(metrics))

    return bar, callback


def train_demo_run(
    model: torch.nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    loss: CombinedLoss,
    settings: DemoSettings,
    run_dir: Path,
    device: torch.device,
    progress: bool,
    make_board: Callable[[], TensorBoardLogger | None],
    **options: Any,
) -> MetricsHistory:
    """``train`` as every demo model's run calls it: a progress bar, TensorBoard when ``make_board`` gives a logger,
    checkpoints in the run folder, resuming as the settings say; the bar and the logger close however it ends.

    ``options`` are the model's own (``lr`` or ``optimizer``, ``views`` or ``adapter``).
    """
    bar, callback = _progress(len(train_loader) * settings.epochs, progress)
    board = make_board()
    try:
        return train(
            model,
            train_loader,
            val_loader,
            loss,
            epochs=settings.epochs,
            device=device,
            callbacks=[callback, *([board] if board else [])],
            log_interval=2,
            checkpoint_dir=run_dir,
            resume_from=settings.resume,
            new_segment="--force-config" if settings.force_config else None,
            **options,
        )
    finally:
        bar.close()
        if board:
            board.close()


class SettingsError(ValueError):
    """A command-line setting that cannot work (device, sizes); the message names the flag."""


class RunExistsError(ValueError):
    """The run folder already holds a run that would be overwritten; the message names it."""


class NothingTrainedError(RuntimeError):
    """Every training step of the run had a non-finite loss or gradient; the files written are kept."""


RUN_FILES = ("history.json", "last.pt", "best.pt")  # a folder holding any of these holds a run


def resolve_device(name: str) -> torch.device:
    """The torch device ``--device`` names, checked to exist here before anything is written."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise SettingsError(f"--device: expected cpu, cuda, cuda:N or mps, got {name!r}") from None
    if device.type == "cpu":
        return device
    if device.type == "meta":
        raise SettingsError(f"--device: expected a device that holds data (cpu, cuda, cuda:N, mps), got {name!r}")
    if device.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            raise SettingsError(
                f"--device: {name!r} requested, but this torch build has no CUDA support "
                f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
            )
        if not torch.cuda.is_available():
            raise SettingsError(f"--device: {name!r} requested, but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingsError(
                f"--device: {name!r} requested, but only {torch.cuda.device_count()} CUDA "
                f"device(s) exist (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
    try:
        torch.empty(1, device=device)
    except Exception as exc:  # torch raises several types for a device type it cannot use
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise SettingsError(f"--device: {name!r} is not usable here: {reason}") from None
    return device


def _check_run_folder(run_dir: Path, settings: DemoSettings) -> None:
    """Refuse to write into a folder holding another run, unless resuming it or told to --overwrite."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SettingsError(f"--name: {run_dir} is a file; expected a run folder")
    existing = [f for f in RUN_FILES if (run_dir / f).exists()]
    if not existing or settings.overwrite:
        return
    if settings.resume is not None and Path(settings.resume).resolve().parent == run_dir.resolve():
        return
    raise RunExistsError(
        f"{run_dir}: already holds a run ({', '.join(existing)}); continue it with --resume "
        f"{run_dir / 'last.pt'}, choose another --name, or pass --overwrite to replace it"
    )


@contextmanager
def open_run_folder(
    run_dir: Path,
    settings: DemoSettings,
    *,
    changes: list[str],
    start: int,
    config: LossConfig,
    loss: CombinedLoss,
    say: Callable[[str], None],
    what: str = "",
) -> Iterator[None]:
    """The run folder, locked while the run writes it: checked again under the lock, a killed save's temporaries
    removed, an overwritten run's files cleared, a changed config's previous files kept beside the new ones, and
    this run's resolved config (``what`` says whose) and lock written; every demo model's run goes through here."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunFolderLock(run_dir) as lock:
        _check_run_folder(run_dir, settings)  # again: another process may have finished a run here meanwhile
        removed = lock.remove_stale_temporaries()
        if removed:
            say(f"{run_dir}: removed {len(removed)} temporary file(s) of a save that was killed: {', '.join(removed)}")
        resuming_in_place = settings.resume is not None and Path(settings.resume).resolve().parent == run_dir.resolve()
        if settings.overwrite and not resuming_in_place:
            for name in RUN_FILES:  # the folder never mixes two runs' files
                (run_dir / name).unlink(missing_ok=True)
        if changes:  # the previous segment's config and lock stay beside the new ones
            for name in ("config.toml", "lock.json"):
                if (run_dir / name).is_file():
                    shutil.copy2(run_dir / name, run_dir / name.replace(".", f".before-epoch{start}.", 1))
        versions = ", ".join(f"{n} = {p}" for n, p in loss.provenance.items())
        atomic_write_text(
            run_dir / "config.toml",
            f"# resolved loss config{what}, distill-core {__version__}; "
            f"plugins: {versions}\n" + dumps_config(config, ".toml"),
        )
        write_lock(run_dir / "lock.json", loss)
        yield


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


def _check_something_trained(history: MetricsHistory, start: int, steps_per_epoch: int, run_dir: Path) -> None:
    """Fail when every step this run took had a non-finite loss or gradient: the model learnt nothing."""
    epochs = [e for e in history.epochs if e.epoch >= start]
    steps = steps_per_epoch * len(epochs)
    if steps and all(e.nonfinite_steps >= steps_per_epoch for e in epochs):
        first, last = epochs[0].epoch + 1, epochs[-1].epoch + 1
        span = f"epoch {first}" if first == last else f"epochs {first}-{last}"
        raise NothingTrainedError(
            f"{run_dir}: all {steps} training steps of {span} had a non-finite "
            "loss or gradient and were skipped (nonfinite_steps in history.json), so the model did not train; "
            "the run's files are kept; check the loss config's weights and [balancer] settings, and the data"
        )


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
    """Train the demo VAE and write runs/<name>/: history.json, config.toml, lock.json, losses.png, WAVs.

    Every setting, the config, the data and the checkpoint to resume from are checked before anything
    is written; a folder holding another run is never replaced without ``overwrite``, and one process at
    a time writes a run folder (RunBusyError names the other). ``notify`` gets one-line notes for the user
    (the data used, temporaries of a killed save removed). A run whose every step was non-finite raises
    NothingTrainedError after its files are written.
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
    with open_run_folder(run_dir, settings, changes=changes, start=start, config=config, loss=loss, say=say):
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
