"""What every demo model's run shares (the VAE's in ``run``, the vocoder's in ``vocoder_run``): the settings and
their errors, the device, the run folder (checked, locked, written) and ``train`` with a progress bar."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import torch
from torch.utils.data import DataLoader

from distill_core import __version__
from distill_core.files.atomic import atomic_write_text
from distill_core.loss.combined import CombinedLoss
from distill_core.loss.config import LossConfig, dumps_config
from distill_core.loss.lockfile import write_lock
from distill_core.training.loop import train
from distill_core.training.metrics import EpochMetrics, MetricsHistory, StepMetrics
from distill_core.training.progress import console_values, epoch_line
from distill_core.training.run_lock import RunFolderLock
from distill_core.training.spectrogram import SpectrogramConfig
from distill_core.training.tensorboard import TensorBoardLogger
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
