"""``distill-loss import-seed``: a run of the seed's ``train()`` rewritten as our run folder, to resume with train.

The seed wrote ``checkpoints/checkpoint_epoch{NNNN}.pt`` under its output folder (the latest few and the best),
each a pickle of its model and AdamW state, its ``asdict(TrainingConfig)`` and its ``MetricsHistory``. The
latest becomes ``last.pt`` and the one with the lowest validation loss ``best.pt``, in our checkpoint format;
the seed's loss config becomes ``config.toml`` (through the seed-config loader), its history
``history.json``. What our format has no entry for (scheduler state, the rest of the TrainingConfig, the
spectrogram settings, the KL weight) is kept in each checkpoint's ``seed`` entry and in ``seed.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from distill_core import __version__
from distill_core.config.converter import ConfigError, converter, join
from distill_core.files.atomic import atomic_write_text
from distill_core.loss.combined import CombinedLoss
from distill_core.loss.config import LossConfig, dumps_config, load_config
from distill_core.loss.lockfile import make_lock, write_lock
from distill_core.training.checkpoint import load_training_state, save_checkpoint
from distill_core.training.demo_run import RUN_FILES, RunExistsError
from distill_core.training.metrics import MetricsHistory
from distill_core.training.seed_pickle import SeedImportError, read_seed_checkpoint

# What a seed checkpoint must hold to become a run of ours, and the type each entry must have.
SEED_ENTRIES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "epoch": (int, "an int"),
    "model_state_dict": (Mapping, "a state dict"),
    "optimizer_state_dict": (Mapping, "an optimizer state dict"),
    "training_config": (Mapping, "the seed's TrainingConfig (asdict)"),
    "metrics_history": (Mapping, "the seed's MetricsHistory (to_dict)"),
}
CARRIED = ("epoch", "model_state_dict", "optimizer_state_dict", "metrics_history")  # the rest goes under "seed"
WRITTEN = ("last.pt", "best.pt", "history.json", "config.toml", "lock.json", "seed.json")


@attrs.frozen
class SeedCheckpoint:
    """One checkpoint of a seed run, read as plain data and tensors."""

    path: Path
    state: dict[str, Any]

    @property
    def epoch(self) -> int:
        """The last finished epoch (0-based): the run continues at the next."""
        return self.state["epoch"]

    @property
    def val_loss(self) -> float:
        """The validation loss the seed saved with it (inf for a checkpoint saved on cancel mid-epoch)."""
        value = self.state.get("val_loss", math.inf)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.inf


@attrs.frozen
class ImportReport:
    """What ``import_seed`` wrote: the files and what the run holds."""

    out: Path
    source: Path
    epoch: int
    best_epoch: int | None
    epochs: int
    steps: int
    files: tuple[str, ...]
    lr: float

    def summary(self) -> str:
        """Two lines for the console: what was written and how to continue the run."""
        best = f", best.pt from epoch {self.best_epoch}" if self.best_epoch is not None else ""
        stalled = (
            " (where the seed's schedule ended: re-import with --overwrite --lr RATE to train on)"
            if self.lr == 0
            else ""
        )
        return (
            f"wrote {self.out}/: {', '.join(self.files)} from {self.source} (last.pt at epoch {self.epoch}"
            f"{best}; history: {self.epochs} epochs, {self.steps} steps; learning rate {self.lr:g}{stalled})\n"
            f"continue it with: distill-loss train {self.out / 'config.toml'} --out {self.out.parent} "
            f"--name {self.out.name} --resume {self.out / 'last.pt'} --epochs N (N > {self.epoch + 1}; the "
            f"demo's VAE), or train(model, ..., resume_from='{self.out / 'last.pt'}') for your own model"
        )


def seed_checkpoint_paths(run: str | os.PathLike) -> list[Path]:
    """The checkpoint files of a seed run: its output folder, its ``checkpoints/`` folder or one ``.pt`` file."""
    p = Path(run)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise SeedImportError(f"{p}: no such seed run folder or checkpoint file")
    folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    found = sorted(folder.glob("checkpoint_epoch*.pt"))
    if not found:
        raise SeedImportError(
            f"{p}: holds no seed checkpoint; expected the output folder of the seed's train() "
            "(checkpoints/checkpoint_epochNNNN.pt) or one checkpoint file"
        )
    return found


def read_seed_run_checkpoint(path: Path) -> SeedCheckpoint:
    """Read one seed checkpoint and check every entry the import uses."""
    state = read_seed_checkpoint(path)
    if not isinstance(state, dict):
        raise SeedImportError(
            f"{path}: not a seed checkpoint: holds a {type(state).__name__}, expected the dict "
            "the seed's save_checkpoint writes"
        )
    if "format" in state and "model" in state:
        raise SeedImportError(
            f"{path}: already a distill checkpoint; resume it with distill-loss train --resume {path}"
        )
    for key, (kind, name) in SEED_ENTRIES.items():
        if key not in state:
            found = ", ".join(map(str, list(state)[:8])) or "none"
            raise SeedImportError(
                f"{path}: not a seed checkpoint: no {key!r} entry (found: {found}); expected "
                "the dict the seed's train() saves (model_state_dict, optimizer_state_dict, ...)"
            )
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise SeedImportError(f"{path}: entry {key!r} is {type(state[key]).__name__}, expected {name}")
    if state["epoch"] < 0:
        raise SeedImportError(f"{path}: entry 'epoch' is {state['epoch']}, expected >= 0")
    return SeedCheckpoint(path, state)


def seed_loss_config(checkpoint: SeedCheckpoint) -> LossConfig:
    """Our LossConfig from the seed's ``training_config['loss']``, through the seed-config loader."""
    section = checkpoint.state["training_config"].get("loss")
    if not isinstance(section, Mapping):
        raise SeedImportError(
            f"{checkpoint.path}: training_config has no 'loss' section; expected the seed's "
            "LossConfig (stft, reconstruction, kl) of its multi-resolution loss"
        )
    try:
        return load_config(section)
    except ConfigError as exc:
        raise ConfigError(
            [(join("training_config.loss", p) if p else "training_config.loss", r) for p, r in exc.problems],
            str(checkpoint.path),
        ) from None


def seed_history(checkpoint: SeedCheckpoint) -> MetricsHistory:
    """The seed's metrics history, every logged step and epoch, in our history type."""
    return MetricsHistory.from_dict(checkpoint.state["metrics_history"], f"{checkpoint.path} metrics_history")


def _kept(checkpoint: SeedCheckpoint) -> dict[str, Any]:
    """Everything of the seed checkpoint that our format has no entry for, and where it came from."""
    return {"source": str(checkpoint.path), **{k: v for k, v in checkpoint.state.items() if k not in CARRIED}}


def optimizer_state(checkpoint: SeedCheckpoint, lr: float | None) -> dict[str, Any]:
    """The seed's optimizer state, with every group's learning rate set to ``lr`` when one is given.

    Our loop has no scheduler: a resumed run trains at the rate the seed's cosine schedule left, which is
    its minimum (0 by default) once the seed's run finished.
    """
    saved = checkpoint.state["optimizer_state_dict"]
    groups = saved.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) and "lr" in g for g in groups):
        raise SeedImportError(
            f"{checkpoint.path}: entry 'optimizer_state_dict' has no param_groups with a "
            "learning rate; expected torch's optimizer state dict"
        )
    if lr is None:
        return saved
    return {**saved, "param_groups": [{**g, "lr": lr} for g in groups]}


def run_state(
    checkpoint: SeedCheckpoint, loss: CombinedLoss, best_val: float, lr: float | None = None
) -> dict[str, Any]:
    """A checkpoint ``train(resume_from=...)`` continues: the seed's model and optimizer state as saved.

    The seed saved no RNG state; a generator seeded with 0 gives the resumed run a fixed one.
    """
    return {
        "epoch": checkpoint.epoch,
        "model": checkpoint.state["model_state_dict"],
        "optimizer": optimizer_state(checkpoint, lr),
        "config": converter.unstructure(loss.config),
        "history": seed_history(checkpoint).to_dict(),
        "provenance": make_lock(loss),
        "rng": {"torch": torch.Generator().manual_seed(0).get_state()},
        "best_val": best_val,
        "seed": _kept(checkpoint),
    }


def default_out(run: str | os.PathLike) -> Path:
    """``runs/<name of the seed's output folder>``."""
    p = Path(run).resolve()
    if p.is_file():
        p = p.parent
    if p.name == "checkpoints":
        p = p.parent
    return Path("runs") / p.name


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a folder holding any file the import would write (a run's, or the user's own config.toml), unless
    ``overwrite``; the other files of a folder are never touched."""
    if out.exists() and not out.is_dir():
        raise SeedImportError(f"--out: {out} is a file; expected a run folder")
    existing = [f for f in RUN_FILES if (out / f).exists()]
    if existing and not overwrite:
        raise RunExistsError(
            f"{out}: already holds a run ({', '.join(existing)}); choose another --out, or pass "
            "--overwrite to replace it"
        )
    ours = [f for f in WRITTEN if (out / f).exists()]
    if ours and not overwrite:
        raise RunExistsError(
            f"--out {out}: holds {', '.join(ours)}, which import-seed would replace; choose another --out, "
            "or pass --overwrite to replace "
            + ("it" if len(ours) == 1 else "them")
            + " (the folder's other files are kept either way)"
        )


def check_lr(lr: float | None) -> float | None:
    """``--lr`` as the config's numbers are checked: a finite rate above 0, or None (the seed's own)."""
    if lr is None:
        return None
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise SeedImportError(f"--lr: expected a finite learning rate above 0, got {lr!r}")
    return float(lr)


def _json_value(value: Any) -> Any:
    """seed.json is for reading: a tensor (none expected) is named, never dumped."""
    return f"<{type(value).__name__}>"


def import_seed(
    run: str | os.PathLike, out: str | os.PathLike | None = None, *, lr: float | None = None, overwrite: bool = False
) -> ImportReport:
    """Write the seed run ``run`` as our run folder ``out``; every checkpoint is read and checked first.

    ``lr`` replaces the learning rate the seed's scheduler left in the optimizer state. Nothing is written
    when any checkpoint is refused, and a folder holding a run is never replaced without ``overwrite``.
    """
    lr = check_lr(lr)
    checkpoints = [read_seed_run_checkpoint(p) for p in seed_checkpoint_paths(run)]
    last = max(checkpoints, key=lambda c: (c.epoch, c.path.stat().st_mtime))
    config = seed_loss_config(last)
    loss = CombinedLoss(config)
    history = seed_history(last)
    scored = [c for c in checkpoints if math.isfinite(c.val_loss)]
    best = min(scored, key=lambda c: (c.val_loss, -c.epoch)) if scored else None
    best_val = best.val_loss if best is not None else math.inf
    states = {"last.pt": run_state(last, loss, best_val, lr)}
    if best is not None:
        if seed_loss_config(best) != config:
            raise SeedImportError(
                f"{best.path}: its loss config differs from {last.path}'s; import one checkpoint file at a time"
            )
        states["best.pt"] = run_state(best, loss, best_val, lr)
    out_dir = Path(out) if out is not None else default_out(run)
    _check_out(out_dir, overwrite)

    # Nothing was written above this line.
    for name in RUN_FILES:  # with --overwrite: the folder never mixes two runs' files
        (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = ", ".join(f"{n} = {p}" for n, p in loss.provenance.items())
    atomic_write_text(
        out_dir / "config.toml",
        f"# imported from the seed run {last.path}; distill-core "
        f"{__version__}; plugins: {versions}\n" + dumps_config(config, ".toml"),
    )
    write_lock(out_dir / "lock.json", loss)
    atomic_write_text(out_dir / "seed.json", json.dumps(_kept(last), indent=1, default=_json_value) + "\n")
    history.save(out_dir / "history.json")
    for name in ("best.pt", "last.pt"):
        if name in states:
            save_checkpoint(out_dir / name, states[name])
    load_training_state(out_dir / "last.pt")  # what train --resume reads back, checked once
    files = tuple(f for f in WRITTEN if f in states or not f.endswith(".pt"))
    return ImportReport(
        out_dir,
        Path(run),
        last.epoch,
        best.epoch if best is not None else None,
        len(history.epochs),
        len(history.steps),
        files,
        float(states["last.pt"]["optimizer"]["param_groups"][0]["lr"]),
    )
