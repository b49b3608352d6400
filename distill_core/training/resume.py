"""The one resume check: a checkpoint fits the model, its history reads, and its loss (config and plugin
versions) is the one given, or the caller accepts the change. ``train`` and ``distill-loss train --resume``
both use it, with one message.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from distill_core.config.converter import ConfigError, _describe, converter
from distill_core.config.diff import diff_lines, summarize
from distill_core.loss.combined import CombinedLoss
from distill_core.loss.config import load_config
from distill_core.loss.lockfile import make_lock
from distill_core.training.checkpoint import CheckpointError, LossChangedError, check_model_fits, load_training_state
from distill_core.training.loss_state import restore_loss_state
from distill_core.training.metrics import MetricsHistory


@attrs.frozen
class Resume:
    """A checkpoint that passed the check: its state, its history, and the loss changes the caller accepted."""

    state: dict[str, Any]
    history: MetricsHistory
    changes: list[str]


def check_resume(
    path: str | os.PathLike,
    model: torch.nn.Module,
    loss: CombinedLoss | None,
    *,
    accept: bool,
    how_to_accept: str,
    saved_config: Path | None = None,
    model_hint: str = "",
) -> Resume:
    """Everything about resuming from ``path`` that can fail, checked before the model is restored or a file
    written; ``loss`` (when given) is restored as the check that its state fits, and the caller restores it
    again when it starts (the same state: the same result).

    ``how_to_accept`` is how this caller accepts a changed loss (``--force-config``, ``new_segment=``),
    ``saved_config`` the run's config file to resume with, ``model_hint`` what keeps the model the same.
    """
    state = load_training_state(path)
    try:
        check_model_fits(state["model"], model, path)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}{model_hint}") from None
    history = MetricsHistory.from_dict(state["history"], str(path))
    changes = loss_changes(state.get("config"), state.get("provenance"), loss)
    if changes and not accept:
        whose, keep = (
            ("run's", f"the run's config ({saved_config})") if saved_config else ("checkpoint's", "the run's loss")
        )
        raise LossChangedError(
            f"{path}: the loss differs from the {whose}: {summarize(changes)}; resume with "
            f"{keep}, or pass {how_to_accept} to accept the change and start a new "
            "best-tracking segment",
            changes,
        )
    if loss is not None:  # the loss's own state too, before the caller writes anything for the resumed run
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what restoring warns of is said once, where the caller restores it
            restore_loss_state(loss, state, changed=bool(changes), source=path)
    return Resume(state, history, changes)


def _with_defaults(saved_config: Any) -> Any:
    """A saved config as this version reads it: keys added since (with their defaults) are no change."""
    if not isinstance(saved_config, Mapping):
        return saved_config
    try:
        return converter.unstructure(load_config(saved_config))
    except (ConfigError, LookupError, TypeError, ValueError):  # not readable now: compare it as written
        return saved_config


def loss_changes(saved_config: Any, saved_lock: Any, loss: CombinedLoss | None) -> list[str]:
    """Path-level differences between a checkpoint's loss (config and plugin lock) and ``loss``.

    Each line reads ``terms.kl.free_bits: 0.1 -> 0.2`` (``config.diff``'s, one per changed leaf: a list of
    tables entry by entry, ``terms.adversarial.discriminators[0].options.periods: [2, 3] -> [2, 3, 5]``);
    plugin versions as ``plugin for 'stft': ...``.
    """
    out: list[str] = []
    now_config = converter.unstructure(loss.config) if loss is not None else None
    if (saved_config is None) != (now_config is None):
        describe = {True: "the legacy vae_loss", False: "a CombinedLoss"}
        return [f"loss: {describe[saved_config is None]} -> {describe[now_config is None]}"]
    out += diff_lines(_with_defaults(saved_config), now_config, root="loss")
    saved_lock = saved_lock if isinstance(saved_lock, Mapping) else {}
    now_lock = make_lock(loss) if loss is not None else {}
    for term in [t for t in now_lock if t in saved_lock]:
        saved, current = saved_lock[term], now_lock[term]
        was = f"{saved.get('distribution')}=={saved.get('version')}" if isinstance(saved, Mapping) else _describe(saved)
        now = f"{current['distribution']}=={current['version']}"
        if was != now:
            out.append(f"plugin for {term!r}: {was} -> {now}")
    return out
