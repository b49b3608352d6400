"""train_epoch and validate_epoch with the seed's signatures and keys, thin over the generic passes.

``loss_config`` is a LossConfig (generic or the seed's dataclass), a built CombinedLoss, or None for the
seed's legacy ``vae_loss``. An explicit ``kl_weight`` keeps the seed's meaning: 0 or less leaves KL out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from distill_core.engine.passes import Adapter, Window, evaluate_pass, train_pass
from distill_core.loss.combined import CombinedLoss
from distill_core.loss.config import LossConfig
from distill_core.seed.adapter import VAEAdapter, Views
from distill_core.seed.losses import LegacyVAELoss, combined_for, kl_override, seed_prebuilt
from distill_core.seed.metrics import NAMED_TERMS, step_metrics

Callback = Callable[[Any], None]
# validate_epoch's seed keys, by the loss output each shows.
VAL_KEYS = {
    "val_loss": "total_loss",
    "val_recon_loss": "recon_loss",
    "val_kl_loss": "kl_loss",
    **{f"val_{k}": k for k in NAMED_TERMS},
}


def resolve_loss(
    loss_config: Any,
    device: torch.device | str | None = None,
    stft_loss_fn: nn.Module | None = None,
    *,
    fresh: bool = False,
    free_bits: float = 0.1,
) -> CombinedLoss | LegacyVAELoss:
    """A CombinedLoss for a config, the given one, or the legacy loss for None.

    ``stft_loss_fn`` is the seed's prebuilt STFT module (``create_stft_loss`` or auraloss's own), used as
    the ``stft`` term. A config is built once and reused by later calls with the same config object (the
    seed calls ``train_epoch`` each epoch with its config; a balancer's averages then carry over), unless
    ``fresh``: a run of ``train`` owns its loss and its state.
    """
    if loss_config is None:
        loss: CombinedLoss | LegacyVAELoss = LegacyVAELoss(free_bits)
    elif isinstance(loss_config, CombinedLoss):
        loss = loss_config
    elif fresh:
        loss = CombinedLoss(loss_config, prebuilt=seed_prebuilt(stft_loss_fn))
    else:
        loss = combined_for(loss_config, stft_loss_fn)
    return loss.to(device) if device is not None else loss


def term_keys(loss: nn.Module) -> tuple[str, ...]:
    """The output keys of the terms a loss computes."""
    return tuple(getattr(loss, "term_keys", ()))


def component_keys(loss: nn.Module, means: Mapping[str, float], metrics: Iterable[str] = ()) -> tuple[str, ...]:
    """The loss's components among a pass's averages: its terms' keys, then every other ``*_loss`` output (a
    multi-output term's ``<term>_<output>_loss``) that is not the total, a group's sum or an update metric."""
    known = term_keys(loss)
    groups = getattr(getattr(loss, "config", None), "groups", None) or {}
    skip = {"total_loss", *known, *metrics, *(g.key or f"{name}_loss" for name, g in groups.items())}
    return known + tuple(sorted(k for k in means if k.endswith("_loss") and k not in skip))


def check_seed_order(kl_weight: Any, where: str) -> None:
    """The seed's 4th positional argument is kl_weight: a loss there is a misplaced argument."""
    if isinstance(kl_weight, (LossConfig, CombinedLoss)) or dataclasses.is_dataclass(kl_weight):
        raise TypeError(
            f"{where}: the 4th positional argument is kl_weight (the seed's order: model, loader, "
            f"optimizer, kl_weight, device, ...); pass the loss as loss_config=..."
        )


def train_epoch(
    model: nn.Module,
    train_loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    kl_weight: float | None = None,
    device: torch.device | str | None = None,
    gradient_clip_norm: float | None = 1.0,
    loss_config: Any = None,
    stft_loss_fn: nn.Module | None = None,
    epoch: int = 0,
    callback: Callback | None = None,
    cancel_event: Any = None,
    *,
    total_epochs: int = 1,
    callbacks: Sequence[Callback] = (),
    log_interval: int = 10,
    free_bits: float = 0.1,
    views: Views | None = None,
    adapter: Adapter | None = None,
) -> dict[str, float]:
    """One training epoch, called as the seed calls it; returns the epoch's mean of every loss output.

    ``kl_weight`` None uses the config's schedule at ``epoch`` of ``total_epochs``. ``callback``/``callbacks``
    get StepMetrics (``step`` 0-based) every ``log_interval`` steps (1: every step) and at the epoch's end:
    values are averaged on the device over the window, so logging costs one host sync per window.
    ``cancel_event`` (anything with ``is_set()``) is checked between steps. The result has our keys
    (``total_loss``, ``<term>_loss``, ``nonfinite``) and the seed's (``train_loss``; ``stft_loss``,
    ``mag_recon_loss``, ``if_recon_loss`` are 0.0 when not computed). ``adapter`` replaces the VAE's
    (``model(x) -> (recon, mu, logvar)``); ``views`` adds derived batch entries (waveforms) to it.
    """
    check_seed_order(kl_weight, "train_epoch")
    device = torch.device(device) if device is not None else None
    loss = resolve_loss(loss_config, device, stft_loss_fn, free_bits=free_bits)
    override = kl_override(loss, kl_weight)
    weights = loss.weights(epoch, total_epochs, override)
    listeners = [*([callback] if callback is not None else []), *callbacks]

    def report(window: Window) -> None:
        metrics = step_metrics(window, weights, component_keys(loss, window.means, window.metrics))
        for listener in listeners:
            listener(metrics)

    means = train_pass(
        model,
        train_loader,
        optimizer,
        loss,
        adapter or VAEAdapter(views),
        epoch=epoch,
        total_epochs=total_epochs,
        weights=override,
        device=device,
        clip_norm=gradient_clip_norm,
        log_interval=log_interval,
        report=report if listeners else None,
        cancel_event=cancel_event,
    )
    means = dict(means)  # a plain dict, as the seed's (pickles under torch.load(weights_only=True))
    if "total_loss" in means:
        means["train_loss"] = means["total_loss"]
        for key in NAMED_TERMS:
            means.setdefault(key, 0.0)
    return means


def validate_epoch(
    model: nn.Module,
    val_loader: Iterable[Any],
    kl_weight: float | None = None,
    device: torch.device | str | None = None,
    loss_config: Any = None,
    stft_loss_fn: nn.Module | None = None,
    *,
    epoch: int = 0,
    total_epochs: int = 1,
    free_bits: float = 0.1,
    views: Views | None = None,
    adapter: Adapter | None = None,
) -> dict[str, float]:
    """Mean validation losses, called as the seed calls it, plus ``kl_divergence``: the raw KL (no free
    bits) for collapse checks. Keys: ours (``total_loss``, ``<term>_loss``) and the seed's seven
    (``val_loss``, ``val_recon_loss``, ``val_kl_loss``, ``kl_divergence``, ``val_<term>_loss`` for its
    three named terms: 0.0 when not computed). An empty loader gives the seed's: NaN losses, KL 0.0."""
    check_seed_order(kl_weight, "validate_epoch")
    device = torch.device(device) if device is not None else None
    loss = resolve_loss(loss_config, device, stft_loss_fn, free_bits=free_bits)
    means = evaluate_pass(
        model,
        val_loader,
        loss,
        adapter or VAEAdapter(views),
        epoch=epoch,
        total_epochs=total_epochs,
        weights=kl_override(loss, kl_weight),
        device=device,
    )
    if not means:
        return {**{seed: math.nan for seed in VAL_KEYS}, "kl_divergence": 0.0}
    means.update({seed: means[ours] for seed, ours in VAL_KEYS.items() if ours in means})
    means.update({f"val_{k}": means[k] for k in component_keys(loss, means) if k in means})
    means.setdefault("kl_divergence", 0.0)
    for key in NAMED_TERMS:
        means.setdefault(f"val_{key}", 0.0)
    return means
