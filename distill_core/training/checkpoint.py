"""Checkpoints: model, optimizer, config, history, plugin provenance and RNG state, saved atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from distill_core.files.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "FORMAT",
    "CheckpointError",
    "LossChangedError",
    "load_checkpoint",
    "save_checkpoint",
    "load_training_state",
    "check_model_fits",
    "rng_state",
    "restore_rng",
]


class LossChangedError(CheckpointError):
    """Resuming with a loss that differs from the checkpoint's; ``changes`` lists each difference."""

    def __init__(self, message: str, changes: list[str]) -> None:
        super().__init__(message)
        self.changes = changes


# What train() reads back from a checkpoint to resume, and the type each entry must have.
TRAINING_ENTRIES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "epoch": (int, "an int"),
    "best_val": ((int, float), "a number"),
    "model": (Mapping, "a state dict"),
    "optimizer": (Mapping, "an optimizer state dict"),
    "history": (Mapping, "a history table"),
    "rng": (Mapping, "an RNG state table"),
}


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint train() can resume from: every entry it reads is present and of the right type."""
    state = load_checkpoint(path)
    for key, (kind, name) in TRAINING_ENTRIES.items():
        if key not in state:
            raise CheckpointError(
                f"{path}: checkpoint has no {key!r} entry; expected a training checkpoint (last.pt or best.pt of a run)"
            )
        value = state[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{path}: checkpoint entry {key!r} is {type(value).__name__}, expected {name}")
    if state["epoch"] < 0:
        raise CheckpointError(f"{path}: checkpoint entry 'epoch' is {state['epoch']}, expected >= 0")
    if not isinstance(state["rng"].get("torch"), torch.Tensor):
        raise CheckpointError(f"{path}: checkpoint entry 'rng' has no 'torch' generator state")
    return state


def check_model_fits(saved: Mapping[str, Any], model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Fail, naming the first differing tensor, when a saved state dict does not fit ``model``."""
    current = model.state_dict()
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    shapes = [
        (k, saved[k], current[k])
        for k in saved
        if k in current and (not isinstance(saved[k], torch.Tensor) or saved[k].shape != current[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    if shapes:
        key, was, now = shapes[0]
        was_shape = list(was.shape) if isinstance(was, torch.Tensor) else type(was).__name__
        first = f"{len(shapes)} tensor(s) differ in shape, first {key!r}: {was_shape} saved, {list(now.shape)} now"
    else:
        first = (
            f"{len(missing)} tensor(s) missing (first {missing[0]!r})"
            if missing
            else f"{len(unexpected)} unexpected tensor(s) (first {unexpected[0]!r})"
        )
    raise CheckpointError(
        f"{path}: the checkpoint's model does not fit this model: {first}; resume with the "
        "model settings the run was started with"
    )


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
