"""train: any model through an adapter, the combined loss, checkpoints, resume and the run's history.

The epochs themselves are ``distill_core.engine.passes``'s (no per-step host syncs); ``train_epoch`` and
``validate_epoch`` (the seed's calls) are the seed wing's, re-exported here under the seed's module path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill_core.config.converter import converter
from distill_core.engine.passes import (
    Accumulator,
    Adapter,
    Window,
    check_optimizer,
    evaluate_pass,
    optimizer_step,
    train_pass,
)
from distill_core.files.atomic import signals_deferred
from distill_core.loss.combined import CombinedLoss
from distill_core.loss.lockfile import lock_differences, make_lock
from distill_core.seed.adapter import VAEAdapter, Views
from distill_core.seed.epochs import component_keys, resolve_loss, train_epoch, validate_epoch
from distill_core.seed.metrics import KL_TERM, NAMED_FIELDS, EpochMetrics, StepMetrics, epoch_metrics, step_metrics
from distill_core.training.checkpoint import CheckpointError, restore_rng, rng_state, save_checkpoint
from distill_core.training.ddp import prepare_loss
from distill_core.training.loss_state import loss_state, restore_loss_state, stateful_terms
from distill_core.training.metrics import MetricsHistory
from distill_core.training.resume import check_resume
from distill_core.training.run_lock import RunFolderLock

__all__ = ["train", "train_epoch", "validate_epoch", "default_optimizer", "Accumulator", "optimizer_step"]

Callback = Callable[[Any], None]


def _consecutive_rises(epochs: Sequence[EpochMetrics]) -> int:
    """How many epochs in a row, up to the last, raised the validation loss."""
    rises = 0
    for before, after in zip(epochs[-2::-1], epochs[::-1]):
        if not after.val_loss > before.val_loss:
            break
        rises += 1
    return rises


# The seed's own fields of each record, by the loss output (or adapter figure) that fills it.
SEED_SOURCES: dict[type, dict[str, str]] = {
    EpochMetrics: {"val_recon_loss": "recon_loss", **NAMED_FIELDS[EpochMetrics], "kl_divergence": "kl_divergence"},
    StepMetrics: {"recon_loss": "recon_loss", **NAMED_FIELDS[StepMetrics]},
}


def _mark_unmeasured(record: Any, given: Iterable[str], weights: Mapping[str, float], value: float) -> Any:
    """``record`` with each seed field whose output the loss did not give set to ``value`` (StepMetrics'
    ``kl_weight`` too, where there is no KL term)."""
    have = set(given)
    blank = {f: value for f, key in SEED_SOURCES[type(record)].items() if key not in have}
    if isinstance(record, StepMetrics) and KL_TERM not in weights:
        blank["kl_weight"] = value
    return dataclasses.replace(record, **blank) if blank else record


def validation_weights(loss: nn.Module) -> dict[str, float] | None:
    """Validation's total leaves the stateful terms out (weight 0; each is still logged): their value moves with
    what they train (a discriminator changes every step), so best.pt and the divergence check would follow it."""
    stateful = stateful_terms(loss)
    return {name: 0.0 for name in stateful} if stateful else None


def default_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, fused where torch has the kernel for the parameters' device (it skips bad steps without a sync)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:  # a device without the fused kernel
        return torch.optim.Adam(params, lr=lr)


def train(
    model: nn.Module,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any],
    loss_config: Any = None,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    device: torch.device | str | None = None,
    grad_clip_norm: float | None = 1.0,
    callbacks: Sequence[Callback] = (),
    log_interval: int = 10,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    free_bits: float = 0.1,
    divergence_patience: int = 5,
    collapse_threshold: float = 0.5,
    cancel_event: Any = None,
    stft_loss_fn: nn.Module | None = None,
    views: Views | None = None,
    new_segment: str | None = None,
    adapter: Adapter | None = None,
    unmeasured: float = 0.0,
) -> MetricsHistory:
    """Train for ``epochs``: the CombinedLoss (and its STFT module) is built once, here, at the start.

    ``adapter`` turns ``(model, inputs)`` into the loss's batch; the default is the seed's VAE
    (``model(x) -> (recon, mu, logvar)``, with ``views`` adding waveforms some term reads). Each epoch
    evaluates the weight schedules, emits StepMetrics/EpochMetrics to ``callbacks`` with whatever terms the
    config has, warns on divergence (and, when the adapter measures a raw KL, on posterior collapse), and
    (with ``checkpoint_dir``) atomically writes ``last.pt``, ``best.pt`` and ``history.json``.
    ``resume_from`` continues from a ``last.pt`` made with the same loss (config and plugin versions); a
    different loss is an error unless ``new_segment`` gives the reason to accept it, which starts a new
    best-tracking segment (recorded in the history; the old ``best.pt`` is kept as
    ``best.before-epoch<N>.pt``). The loss's own state (a stateful term's discriminator and optimizer, the
    balancer's averages) is in every checkpoint and restored before the first step; each training step calls
    the loss's update step before its forward, and an optimizer holding a loss parameter is refused
    (LossParameterError). The validation loss (best.pt, divergence) weighs stateful terms 0: their values
    move with what they train. Under torch.distributed the loss's state comes from rank 0 and what it trains
    sees the global batch's gradient (``distill_core.training.ddp.prepare_loss``). The default optimizer is a
    fused Adam, which skips a non-finite step without a host sync; ``cancel_event`` (anything with
    ``is_set()``) stops between steps, keeping the finished epochs. ``checkpoint_dir`` is held with the run
    folder lock for the whole call (RunBusyError names another writer). ``unmeasured`` is what the seed's own
    fields of each record (``val_recon_loss``, ``val_kl_loss``, ``kl_divergence``, ``val_stft_loss``, ...) hold
    where the loss gives no output for them: 0.0 as the seed writes them (its readers take a zero for a term
    not configured), or NaN for "not measured", as a run of a model that is not the seed's VAE writes them.
    """
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with RunFolderLock(folder) if folder is not None else contextlib.nullcontext():  # one writer per run folder
        device = torch.device(device) if device is not None else None
        if device is not None:
            model.to(device)
        loss = resolve_loss(loss_config, device, stft_loss_fn, fresh=True, free_bits=free_bits)
        adapter = adapter or VAEAdapter(views)
        optimizer = optimizer or default_optimizer(model, lr)
        check_optimizer(optimizer, loss)
        history, start, best = MetricsHistory(), 0, math.inf
        config = getattr(loss, "config", None)
        if resume_from is not None:  # everything is checked before anything is restored
            resume = check_resume(
                resume_from,
                model,
                loss if isinstance(loss, CombinedLoss) else None,
                accept=new_segment is not None,
                how_to_accept="new_segment=",
            )
            state, changes, history = resume.state, resume.changes, resume.history
            drift = lock_differences(state.get("provenance", {}))
            if drift:
                warnings.warn(
                    f"{resume_from}: installed plugins differ from the checkpoint's: " + "; ".join(drift),
                    RuntimeWarning,
                    stacklevel=2,
                )
            restore_loss_state(loss, state, changed=bool(changes), source=resume_from)  # first: it checks most
            try:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
            except (RuntimeError, ValueError, KeyError, TypeError) as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise CheckpointError(f"{resume_from}: cannot restore the model or optimizer: {reason}") from None
            start, best = state["epoch"] + 1, state["best_val"]
            restore_rng(state["rng"])
            if changes:  # accepted: a new objective starts a new best-tracking segment; the old best.pt is kept
                best = math.inf
                history.start_segment(start, f"{new_segment}: {'; '.join(changes)}")
                old_best = Path(checkpoint_dir) / "best.pt" if checkpoint_dir is not None else None
                if old_best is not None and old_best.is_file():
                    shutil.copy2(old_best, old_best.with_name(f"best.before-epoch{start}.pt"))
        prepare_loss(loss)  # under torch.distributed: rank 0's loss state, gradients averaged over the ranks
        out_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        began = time.perf_counter()
        for epoch in range(start, epochs):
            weights = loss.weights(epoch, epochs)

            def report(window: Window, weights: dict[str, float] = weights) -> None:
                metrics = step_metrics(window, weights, component_keys(loss, window.means, window.metrics))
                if unmeasured != 0.0:  # NaN: never equal to 0.0
                    metrics = _mark_unmeasured(metrics, window.means, weights, unmeasured)
                history.add_step(metrics)
                for callback in callbacks:
                    callback(metrics)

            train_means = train_pass(
                model,
                train_loader,
                optimizer,
                loss,
                adapter,
                epoch=epoch,
                total_epochs=epochs,
                device=device,
                clip_norm=grad_clip_norm,
                log_interval=log_interval,
                report=report,
                cancel_event=cancel_event,
            )
            if cancel_event is not None and cancel_event.is_set():
                break  # the unfinished epoch is not recorded: the files keep the last finished one
            val_means = evaluate_pass(
                model,
                val_loader,
                loss,
                adapter,
                epoch=epoch,
                total_epochs=epochs,
                device=device,
                weights=validation_weights(loss),
            )
            keys = component_keys(loss, {**val_means, **train_means}, getattr(train_means, "metrics", ()))
            metrics = epoch_metrics(
                epoch,
                epochs,
                train_means,
                val_means,
                optimizer.param_groups[0]["lr"],
                time.perf_counter() - began,
                epoch - start + 1,
                keys,
                weights if config is not None else {},
            )
            if unmeasured != 0.0:
                metrics = _mark_unmeasured(metrics, {**train_means, **val_means}, weights, unmeasured)
            history.add_epoch(metrics)
            rises = _consecutive_rises(history.epochs)  # from the history, so a resumed run counts on
            if rises >= divergence_patience:
                warnings.warn(
                    f"epoch {epoch}: validation loss rose {rises} epochs in a row "
                    f"({metrics.val_loss:.4g}); training may be diverging",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if "kl_divergence" in val_means and metrics.kl_divergence < collapse_threshold:
                warnings.warn(
                    f"epoch {epoch}: raw KL {metrics.kl_divergence:.3g} < {collapse_threshold}; "
                    "possible posterior collapse",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if out_dir is not None:  # saved before callbacks run: an exception in one never loses the epoch
                improved = metrics.val_loss < best
                best = min(best, metrics.val_loss) if math.isfinite(metrics.val_loss) else best
                state = {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "config": converter.unstructure(config) if config is not None else None,
                    "history": history.to_dict(),
                    "provenance": make_lock(loss) if isinstance(loss, CombinedLoss) else {},
                    "rng": rng_state(),
                    **(loss_state(loss) if config is not None else {}),
                    "best_val": best,
                }
                # Checkpoints first: a failed write (disk full) then leaves history.json at the epochs last.pt
                # holds, and a resume rewrites it from the checkpoint's own history. Ctrl-C / SIGTERM wait.
                with signals_deferred():
                    save_checkpoint(out_dir / "last.pt", state)
                    if improved:
                        save_checkpoint(out_dir / "best.pt", state)
                    history.save(out_dir / "history.json")
            for callback in callbacks:
                callback(metrics)
        return history
