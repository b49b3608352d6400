"""Read a checkpoint the seed's ``train()`` pickled, running none of the code a pickle can name.

The seed (package ``distill``) saved checkpoints with ``torch.save``, and they hold a few of its own classes
(the ``OverfittingPreset`` enum inside ``asdict(TrainingConfig)``; its config and metrics dataclasses when a
script pickled those directly). ``torch.load(weights_only=True)`` reads tensors and plain data only; here
it also admits exactly the seed's class names in ``SEED_CLASSES``, each as an inert record of ours that only
stores what the pickle hands it. Any other global (``os.system``, the seed's model class, numpy) stops the
load at that name, before anything is called.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from packaging.version import Version

from distill_core.training.checkpoint import CheckpointError

MIN_TORCH = Version("2.6")  # torch.serialization.safe_globals with (class, "module.Name") pairs

_CONFIG, _METRICS = "distill.training.config", "distill.training.metrics"
# The seed's classes that can reach one of its checkpoints (phase 14, src/distill/training/config.py,
# src/distill/training/metrics.py and src/distill/audio/spectrogram.py).
SEED_CLASSES: tuple[str, ...] = (
    *(
        f"{_CONFIG}.{name}"
        for name in (
            "OverfittingPreset",
            "TrainingConfig",
            "RegularizationConfig",
            "ComplexSpectrogramConfig",
            "LossConfig",
            "STFTLossConfig",
            "ReconLossConfig",
            "KLLossConfig",
        )
    ),
    *(f"{_METRICS}.{name}" for name in ("MetricsHistory", "StepMetrics", "EpochMetrics")),
    "distill.audio.spectrogram.SpectrogramConfig",
)


class SeedImportError(CheckpointError):
    """A seed checkpoint that cannot be read or brought over; the message names the file and the entry."""


class SeedRecord:
    """One of the seed's objects as data: a dataclass's fields, or an enum member's value. No seed code."""

    seed_class: ClassVar[str] = ""
    args: tuple[Any, ...] = ()
    fields: dict[str, Any] | None = None

    def __init__(self, *args: Any) -> None:  # an enum member is pickled as ``Class(value)``
        self.args = args

    def __setstate__(self, state: Any) -> None:  # a dataclass instance is pickled as its ``__dict__``
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError(
                f"{self.seed_class}: expected its fields as a dict of names, got {type(state).__name__}"
            )
        self.fields = dict(state)

    def plain(self) -> Any:
        """The fields as a dict (as ``dataclasses.asdict`` gives them), or the enum member's value."""
        if self.fields is not None:
            return {k: plain(v) for k, v in self.fields.items()}
        if len(self.args) == 1:
            return plain(self.args[0])
        raise SeedImportError(
            f"{self.seed_class}: stored neither fields nor one value (got {len(self.args)} arguments)"
        )


_RECORDS: dict[str, type[SeedRecord]] = {
    name: type(name.rsplit(".", 1)[1], (SeedRecord,), {"seed_class": name, "__module__": __name__})
    for name in SEED_CLASSES
}


def plain(value: Any) -> Any:
    """``value`` with every seed record replaced by its data; tensors, state dicts and scalars as they are."""
    if isinstance(value, SeedRecord):
        return value.plain()
    if type(value) is dict:
        return {k: plain(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(plain(v) for v in value)
    return value


def _refusal(exc: Exception) -> str:
    """Why the restricted load stopped, in one clause, without torch's advice to load unsafely."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)  # "Unsupported global: GLOBAL x.y ..." or "... GLOBAL x.y whose ..."
    if found:
        return (
            f"refused: the file names the Python global {found.group(1)}, which is not one of the seed's "
            "classes (its config and metrics dataclasses), a tensor or plain data; nothing in it was run"
        )
    if (
        isinstance(exc, pickle.UnpicklingError)
        and "Weights only load failed" in text
        and "Unsupported operand" not in text
    ):
        reason = next(
            (line.strip() for line in text.splitlines()[1:] if line.strip().startswith("Trying")),
            "it stores Python objects beyond tensors, plain data and the seed's classes",
        )
        return f"refused: {reason.rstrip('.')}; nothing in it was run"
    return "not a readable torch.save file (truncated, corrupt or another format)"


def read_seed_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The dict a seed checkpoint holds, as plain data and tensors; SeedImportError names what is refused."""
    p = Path(path)
    if not p.is_file():
        raise SeedImportError(f"{p}: no such checkpoint file")
    if Version(torch.__version__.split("+")[0]) < MIN_TORCH:
        raise SeedImportError(
            f"{p}: reading a seed checkpoint safely needs torch >= {MIN_TORCH} (safe globals "
            f"admitted by name); installed torch {torch.__version__}"
        )
    admitted: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
        (record, name) for name, record in _RECORDS.items()
    ]
    try:
        with torch.serialization.safe_globals(admitted):
            state = torch.load(p, map_location="cpu", weights_only=True)
    except SeedImportError as exc:
        raise SeedImportError(f"{p}: {exc}") from None
    except Exception as exc:  # torch raises several types for truncated, foreign or refused files
        raise SeedImportError(f"{p}: {_refusal(exc)}") from None
    try:
        return plain(state)
    except SeedImportError as exc:
        raise SeedImportError(f"{p}: {exc}") from None
    except RecursionError:  # a pickle can make an object hold itself
        raise SeedImportError(f"{p}: refused: a seed object nested too deeply or holding itself") from None
