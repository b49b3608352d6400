"""Checkpoint files: torch.save written atomically, and loaded as tensors and plain data only (no code runs).

The file format a run's ``last.pt``/``best.pt`` use; what a training checkpoint must hold is the training
layer's business (``distill_core.training.checkpoint``).
"""

from __future__ import annotations

import io
import os
import pickle
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from distill_core.files.atomic import atomic_write_bytes

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt or of another format; the message names the file."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """torch.save to a temp file beside ``path``, fsync, rename: the previous checkpoint survives a crash."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def _load_failure(exc: Exception) -> str:
    """Why torch.load refused a file, in one clause and without torch's advice to load unsafely."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (
            f"not a distill checkpoint: it stores Python objects{what}, and checkpoints are loaded as "
            "tensors and plain data only"
        )
    if "failed finding central directory" in text or isinstance(exc, (KeyError, EOFError, pickle.UnpicklingError)):
        return "not a distill checkpoint, or a truncated one: not a readable torch.save file"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"cannot load checkpoint: {type(exc).__name__}{': ' + first[:200] if first else ''}"


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors and plain data only, no code runs."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{p}: {_load_failure(exc)}") from None
    version = state.get("format") if isinstance(state, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT:
        raise CheckpointError(
            f"{p}: written by a newer distill (checkpoint format {version}; distill-core "
            f"{metadata.version('distill-core')} reads format {FORMAT}); upgrade distill-core to "
            "load it"
        )
    if version != FORMAT:
        raise CheckpointError(f"{p}: not a distill checkpoint (expected format {FORMAT})")
    return state
