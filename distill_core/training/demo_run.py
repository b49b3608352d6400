"""What every demo model's run shares (the VAE's in ``run``, the vocoder's in ``vocoder_run``): the settings and
their errors, the device, the run folder (checked, locked, written) and ``train`` with a progress bar."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
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
from distill_core.training.checkpoint import CheckpointError, load_training_state
from distill_core.training.loop import train
from distill_core.training.metrics import MetricsHistory
from distill_core.training.progress import progress_display
from distill_core.training.run_lock import RunFolderLock
from distill_core.training.settings_file import load_settings, save_settings
from distill_core.training.spectrogram import SpectrogramConfig, load_spectrogram_config
from distill_core.training.tensorboard import TensorBoardLogger


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
    threads: int | None = None  # torch's intra-op CPU threads (None: as torch has them); run.json keeps the count
    change_options: bool = False  # resume with options (epochs, batch size, ...) other than run.json's


RUN_FILE = "run.json"  # in a run folder: the options it was started with, so that --resume alone continues it
RUN_FORMAT = 1


@attrs.define
class RunOptions:
    """What a run was started with, beyond its loss config (config.toml) and model settings (spectrogram.json,
    vocoder.json): every option that changes what it computes, and whether it writes TensorBoard events."""

    data: str | None  # the WAV folder, absolute; None: the synthetic corpus
    epochs: int
    clips: int
    batch_size: int
    seed: int
    threads: int  # torch's intra-op threads: CPU reductions split by them, so they change the last bits
    device: str
    mel_bins: int | None
    lr: float
    samples: int
    tensorboard: bool


@attrs.define
class OptionChange:
    """Options a resume changed (``--change-options``), from its first epoch on: ``--epochs: 20 -> 30``."""

    epoch: int
    changes: list[str]


@attrs.define
class RunFile:
    """run.json: which model, the options, and the resumes that changed them."""

    format: int
    written_by: str
    model: str
    options: RunOptions
    changed: list[OptionChange]


# Each option by the flag that sets it (lr and samples are DemoSettings' only); those in KEPT_FREELY may differ
# on a resume without --change-options: they never change the weights.
FLAGS = {
    "data": "--data",
    "epochs": "--epochs",
    "clips": "--clips",
    "batch_size": "--batch-size",
    "seed": "--seed",
    "threads": "--threads",
    "device": "--device",
    "mel_bins": "--mel-bins",
    "lr": "lr",
    "samples": "samples",
    "tensorboard": "--no-tensorboard",
}
KEPT_FREELY = frozenset({"tensorboard"})


def run_options(settings: DemoSettings) -> RunOptions:
    """The options ``settings`` run with, as run.json keeps them (the data folder absolute, the thread count
    torch has when none is given)."""
    return RunOptions(
        data=str(Path(settings.data).resolve()) if settings.data is not None else None,
        epochs=settings.epochs,
        clips=settings.clips,
        batch_size=settings.batch_size,
        seed=settings.seed,
        threads=settings.threads if settings.threads is not None else torch.get_num_threads(),
        device=settings.device,
        mel_bins=settings.spectrogram.mel_bins,
        lr=settings.lr,
        samples=settings.samples,
        tensorboard=settings.tensorboard,
    )


def read_run_file(folder: Path) -> RunFile | None:
    """A run folder's run.json, or None for a folder without one (a run started before options were kept);
    a CheckpointError names the file and what is wrong with it."""
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return None
    run = load_settings(path, RunFile, "run")
    if run.format > RUN_FORMAT:
        raise CheckpointError(
            f"{path}: format {run.format}, written by a newer version ({run.written_by or 'unknown'}); "
            f"expected format {RUN_FORMAT} or older: resume it with that version"
        )
    return run


def _shown(field: str, value: Any) -> str:
    if value is None:
        return "none (the synthetic corpus)" if field == "data" else "none"
    return str(value)


def _option_lines(was: RunOptions, now: RunOptions, fields: Iterable[str]) -> list[tuple[str, Any, Any]]:
    return [(f, getattr(was, f), getattr(now, f)) for f in fields if getattr(was, f) != getattr(now, f)]


def check_run_options(settings: DemoSettings, model: str) -> list[str]:
    """On a resume, the options that differ from the run's run.json: refused in one line naming each (a
    SettingsError) unless ``change_options``; then what changed (``--epochs: 20 -> 30``), for the record."""
    if settings.resume is None:
        return []
    folder = Path(settings.resume).parent
    run = read_run_file(folder)
    if run is None:
        return []
    if run.model != model:
        raise SettingsError(
            f"--resume {settings.resume}: a checkpoint of a {run.model} run ({folder / RUN_FILE}); "
            f"continue it with --model {run.model}"
        )
    now = run_options(settings)
    fields = [f for f in FLAGS if f not in KEPT_FREELY]
    differ = _option_lines(run.options, now, fields)
    if differ and not settings.change_options:
        (f, was, new), rest = differ[0], differ[1:]
        what = f"{FLAGS[f]} {_shown(f, new)} differs from the run's {_shown(f, was)}" + "".join(
            f", {FLAGS[g]} {_shown(g, n)} from its {_shown(g, w)}" for g, w, n in rest
        )
        them, it = ("them", "them") if rest else ("it", FLAGS[f])
        raise SettingsError(
            f"{what} ({folder / RUN_FILE}); pass --change-options to continue the run with {them}, or leave "
            f"{it} out to keep the run's"
        )
    return [f"{FLAGS[f]}: {_shown(f, was)} -> {_shown(f, new)}" for f, was, new in differ]


def continue_settings(settings: DemoSettings, given: Collection[str]) -> tuple[DemoSettings, str | None]:
    """A resume's settings as the command line means them: every remembered option it did not give (``given``:
    DemoSettings' field names, ``mel_bins`` for the spectrogram's) taken from the run's run.json, and the run
    folder (``out``, ``name``) from the checkpoint's path. A folder without run.json (an older run) keeps what
    was given; its epochs come from its checkpoint and its mel bands from spectrogram.json, the rest from the
    defaults: the note returned says which."""
    assert settings.resume is not None
    folder = Path(settings.resume).parent
    changes: dict[str, Any] = {}
    if "out" not in given:
        changes["out"] = folder.parent
    if "name" not in given:
        changes["name"] = folder.name
    run = read_run_file(folder)
    note = None
    if run is not None:
        remembered = {f: getattr(run.options, f) for f in FLAGS if f not in given}
    else:
        remembered, found = {}, []
        if "epochs" not in given:
            history = MetricsHistory.from_dict(load_training_state(settings.resume)["history"], str(settings.resume))
            if history.epochs:
                remembered["epochs"] = history.epochs[-1].total_epochs
                found.append(f"--epochs {remembered['epochs']} (its checkpoint's)")
        if "mel_bins" not in given and (folder / "spectrogram.json").is_file():
            remembered["mel_bins"] = load_spectrogram_config(folder / "spectrogram.json").mel_bins
            found.append(f"--mel-bins {_shown('mel_bins', remembered['mel_bins'])} (its spectrogram.json's)")
        assumed = [
            f"{FLAGS[f]} {_shown(f, getattr(settings, f))}"
            for f in ("data", "clips", "batch_size", "seed", "device")
            if f not in given
        ]
        note = (
            f"{folder}: no {RUN_FILE} (a run started before the options were kept); continuing with "
            + ", ".join([*found, *([" ".join(assumed) + " (as given, or the defaults)"] if assumed else [])])
            + f"; {RUN_FILE} keeps them from now on"
        )
    for field, value in remembered.items():
        if field == "mel_bins":
            changes["spectrogram"] = attrs.evolve(settings.spectrogram, mel_bins=value)
        elif field == "data":
            changes["data"] = Path(value) if value is not None else None
        else:
            changes[field] = value
    return attrs.evolve(settings, **changes), note


def use_threads(settings: DemoSettings) -> None:
    """Set torch's intra-op threads as ``threads`` says (nothing when None); a SettingsError for fewer than 1."""
    if settings.threads is None:
        return
    if settings.threads < 1:
        raise SettingsError(f"--threads: expected at least 1 thread, got {settings.threads}")
    torch.set_num_threads(settings.threads)


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
    bar, callback = progress_display(len(train_loader) * settings.epochs, progress)
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
    model: str = "vae",
    option_changes: Sequence[str] = (),
) -> Iterator[None]:
    """The run folder, locked while the run writes it: checked again under the lock, a killed save's temporaries
    removed, an overwritten run's files cleared, a changed config's previous files kept beside the new ones, and
    this run's resolved config (``what`` says whose), lock and options (run.json: ``model``, the settings, and
    ``option_changes`` a resume accepted, after those of the run it continues) written; every demo model's run
    goes through here."""
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
        before = read_run_file(Path(settings.resume).parent) if settings.resume is not None else None
        changed = list(before.changed) if before is not None else []
        if option_changes:
            changed.append(OptionChange(start, list(option_changes)))
            say(f"options changed (--change-options) from epoch {start + 1} on: {'; '.join(option_changes)}")
        save_settings(
            RunFile(RUN_FORMAT, f"distill-core {__version__}", model, run_options(settings), changed),
            run_dir / RUN_FILE,
        )
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
