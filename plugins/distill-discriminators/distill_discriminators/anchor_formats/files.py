"""Reading a discriminator checkpoint without executing it: ``torch.load(weights_only=True)`` or a one-line
refusal, DAC's checkpoint folders, and the cheap look at a file that ``check`` can afford."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..adversarial import StateMismatch

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
DAC_WEIGHTS = "weights.pth"  # audiotools' BaseModel.save_to_folder: <folder>/<class name>/weights.pth
DAC_EXTRAS = {"optimizer": "optimizer.pth", "scheduler": "scheduler.pth"}  # DAC's train.py hands these


def dac_folder(path: Path) -> Path | None:
    """The folder holding DAC's ``weights.pth`` that ``path`` names: a discriminator's folder, the checkpoint
    folder above it (``save_to_folder``'s argument), or the ``weights.pth`` file itself."""
    if path.is_dir():
        for folder in (path, path / "discriminator"):
            if (folder / DAC_WEIGHTS).is_file():
                return folder
        return None
    return path.parent if path.name == DAC_WEIGHTS else None


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be a checkpoint, found without loading it (for ``check``), or None: missing, an
    unreadable file, a folder that is no DAC checkpoint folder, or bytes that are neither torch's zip format
    nor a pickle."""
    p = Path(path)
    if not p.exists():
        return f"no such file or folder: {str(p)!r}"
    if p.is_dir():
        folder = dac_folder(p)
        if folder is None:
            return (
                f"{str(p)!r} is a folder without DAC's {DAC_WEIGHTS} (in it or in its discriminator/); "
                f"expected a checkpoint file"
            )
        p = folder / DAC_WEIGHTS
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        return f"cannot read {str(p)!r} ({type(exc).__name__}: {exc.strerror or exc})"
    if head != ZIP_MAGIC and not (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return f"{str(p)!r} is not a checkpoint (neither torch's zip format nor a pickle)"
    return None


def load_file(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, or a StateMismatch in one line: not a checkpoint, or
    one that needs pickled objects (which are never executed here)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        needs = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if needs:
            raise StateMismatch(
                f"{what}: {str(path)!r} needs pickled objects to load ({needs.group(1)}); refused, a pickle is never "
                f"executed here: save the state dicts alone (module.state_dict(), optimizer.state_dict())"
            ) from None
        raise StateMismatch(f"{what}: {str(path)!r} is not a checkpoint (torch.load cannot read it)") from None
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        problem = file_problem(path)
        if problem is not None:
            raise StateMismatch(f"{what}: {problem}") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]
        raise StateMismatch(f"{what}: {str(path)!r} is not a checkpoint (torch.load: {first})") from None


def read_checkpoint(path: str | os.PathLike[str], what: str = "init_from") -> Any:
    """The checkpoint at ``path`` as plain data. A DAC folder (or its ``weights.pth``) becomes
    ``{"weights.pth": ..., "optimizer.pth": ..., "scheduler.pth": ...}`` with the files it holds. ``what``: the
    setting that named the file, which a refusal starts with (the refusal names the file too)."""
    p = Path(path)
    problem = file_problem(p)
    if problem is not None:
        raise StateMismatch(f"{what}: {problem}")
    folder = dac_folder(p)
    if folder is None:
        return load_file(p, what)
    files = {DAC_WEIGHTS: load_file(folder / DAC_WEIGHTS, what)}
    for name in DAC_EXTRAS.values():
        if (folder / name).is_file():
            files[name] = load_file(folder / name, what)
    return files
