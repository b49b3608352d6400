"""train_epoch, validate_epoch and train: the combined loss in a VAE loop, logging without per-step syncs.

Step values accumulate on the device; they become Python floats only when metrics are emitted (every
``log_interval`` steps and at the end of an epoch). Under torch.distributed, epoch sums and counts are
all-reduced once per epoch, so every rank reports the global figure.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Sized

import torch
from torch import nn

from ..combined import CombinedLoss
from ..config import converter
from ..lock import lock_differences, loss_changes, make_lock
from ..loss_config import LossConfig
from ..models import raw_kl, vae_loss
from .checkpoint import (CheckpointError, LossChangedError, check_model_fits, load_training_state, restore_rng,
                         rng_state, save_checkpoint)
from .metrics import EpochMetrics, MetricsHistory, StepMetrics, split_components, step_fields

Callback = Callable[[Any], None]
LossSpec = LossConfig | CombinedLoss | None


def resolve_loss(loss_config: LossSpec, device: torch.device | str | None = None) -> CombinedLoss | None:
    """A CombinedLoss for a config (built once here), the given one, or None for the legacy loss."""
    if loss_config is None or isinstance(loss_config, CombinedLoss):
        loss = loss_config
    else:
        loss = CombinedLoss(loss_config)
    return loss.to(device) if loss is not None and device is not None else loss


def _inputs(batch: Any, device: torch.device | None) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    return x.to(device, non_blocking=True) if device is not None else x


def _kl_weight(loss: CombinedLoss | None, kl_weight: float | None, epoch: int, total_epochs: int) -> float:
    if kl_weight is not None:
        return float(kl_weight)
    if loss is not None and "kl" in loss.config.terms:
        return loss.weights(epoch, total_epochs)["kl"]
    return 1.0 if loss is None else 0.0


def compute_losses(loss: CombinedLoss | None, model_out: tuple[torch.Tensor, ...], target: torch.Tensor, *,
                   epoch: int, total_epochs: int, kl_weight: float | None, free_bits: float = 0.1
                   ) -> dict[str, torch.Tensor]:
    """The combined loss's dict, or the legacy ``vae_loss`` in the same shape."""
    recon, mu, logvar = model_out
    if loss is None:
        total, recon_loss, kl = vae_loss(recon, target, mu, logvar, 1.0 if kl_weight is None else kl_weight,
                                         free_bits)
        return {"total_loss": total, "recon_loss": recon_loss, "kl_loss": kl,
                "nonfinite": (~torch.isfinite(total)).to(total.dtype)}
    batch = {"recon": recon, "target": target, "mu": mu, "logvar": logvar}
    return loss(batch, epoch=epoch, total_epochs=total_epochs, kl_weight=kl_weight)


class Accumulator:
    """Running sums of 0-dim tensors on the device; ``means`` is the only host sync."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def means(self, reduce: bool = False) -> dict[str, float]:
        """Averages as floats; with ``reduce`` and an initialised process group, global averages."""
        if not self.sums:
            return {}
        keys = sorted(self.sums)
        packed = torch.stack([self.sums[k] for k in keys] + [self.sums[keys[0]].new_tensor(float(self.count))])
        if reduce and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(packed)
        values = packed.tolist()
        count = values[-1]
        out = {k: v / count for k, v in zip(keys, values[:-1])}
        if "nonfinite" in out:
            out["nonfinite"] = round(out["nonfinite"] * count)
        return out

    def reset(self) -> None:
        self.sums, self.count = {}, 0


def _emit(callbacks: Iterable[Callback], metrics: Any) -> None:
    for callback in callbacks:
        callback(metrics)


def _skip_nonfinite_step(params: list[nn.Parameter], grad_clip_norm: float | None) -> torch.Tensor:
    """Clip gradients; where their norm is not finite, zero them (no sync). Return the 'bad step' flag."""
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return torch.zeros(())
    norm = torch.nn.utils.clip_grad_norm_(with_grad, grad_clip_norm if grad_clip_norm else math.inf)
    ok = torch.isfinite(norm)
    for grad in (p.grad for p in with_grad):
        assert grad is not None
        grad.nan_to_num_(0.0, 0.0, 0.0).mul_(ok)
    return (~ok).float()


def train_epoch(model: nn.Module, loader: Iterable[Any], optimizer: torch.optim.Optimizer,
                loss_config: LossSpec = None, *, epoch: int = 0, total_epochs: int = 1,
                kl_weight: float | None = None, device: torch.device | str | None = None,
                grad_clip_norm: float | None = 1.0, callbacks: Sequence[Callback] = (), log_interval: int = 10,
                free_bits: float = 0.1) -> dict[str, float]:
    """One training epoch; returns the epoch's mean of every loss component (and ``nonfinite`` steps)."""
    device = torch.device(device) if device is not None else None
    loss = resolve_loss(loss_config, device)
    weight = _kl_weight(loss, kl_weight, epoch, total_epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    epoch_acc, window = Accumulator(), Accumulator()
    total_steps = len(loader) if isinstance(loader, Sized) else 0
    tick = time.perf_counter()
    for step, batch in enumerate(loader, start=1):
        x = _inputs(batch, device)
        out = compute_losses(loss, model(x), x, epoch=epoch, total_epochs=total_epochs, kl_weight=kl_weight,
                             free_bits=free_bits)
        optimizer.zero_grad(set_to_none=True)
        out["total_loss"].backward()
        bad = _skip_nonfinite_step(params, grad_clip_norm)
        optimizer.step()
        logged = {k: v for k, v in out.items() if k != "nonfinite"}
        logged["nonfinite"] = torch.maximum(out["nonfinite"].detach().float(), bad.to(out["nonfinite"].device))
        epoch_acc.add(logged)
        window.add(logged)
        if callbacks and (step % log_interval == 0 or step == total_steps):
            means = window.means()
            now = time.perf_counter()
            _emit(callbacks, StepMetrics(
                epoch=epoch, step=step, total_steps=total_steps, train_loss=means["total_loss"],
                recon_loss=means.get("recon_loss", 0.0), kl_loss=means.get("kl_loss", 0.0), kl_weight=weight,
                learning_rate=optimizer.param_groups[0]["lr"], step_time_s=(now - tick) / window.count,
                nonfinite_steps=int(means.get("nonfinite", 0)), **step_fields(means)))
            window.reset()
            tick = now
    return epoch_acc.means(reduce=True)


@torch.no_grad()
def validate_epoch(model: nn.Module, loader: Iterable[Any], loss_config: LossSpec = None, *, epoch: int = 0,
                   total_epochs: int = 1, kl_weight: float | None = None,
                   device: torch.device | str | None = None, free_bits: float = 0.1) -> dict[str, float]:
    """Mean validation losses, plus ``kl_divergence``: the raw KL (no free bits) for collapse checks."""
    device = torch.device(device) if device is not None else None
    loss = resolve_loss(loss_config, device)
    model.eval()
    acc = Accumulator()
    for batch in loader:
        x = _inputs(batch, device)
        recon, mu, logvar = model(x)
        out = compute_losses(loss, (recon, mu, logvar), x, epoch=epoch, total_epochs=total_epochs,
                             kl_weight=kl_weight, free_bits=free_bits)
        out["kl_divergence"] = raw_kl(mu, logvar)
        acc.add(out)
    return acc.means(reduce=True)


def _consecutive_rises(epochs: Sequence[EpochMetrics]) -> int:
    """How many epochs in a row, up to the last, raised the validation loss."""
    rises = 0
    for before, after in zip(epochs[-2::-1], epochs[::-1]):
        if not after.val_loss > before.val_loss:
            break
        rises += 1
    return rises


def _epoch_metrics(epoch: int, epochs: int, train: Mapping[str, float], val: Mapping[str, float], lr: float,
                   elapsed: float, done: int) -> EpochMetrics:
    _, other = split_components(val)
    return EpochMetrics(
        epoch=epoch, total_epochs=epochs, train_loss=train.get("total_loss", math.nan),
        val_loss=val.get("total_loss", math.nan), val_recon_loss=val.get("recon_loss", 0.0),
        val_kl_loss=val.get("kl_loss", 0.0), kl_divergence=val.get("kl_divergence", 0.0),
        overfitting_gap=val.get("total_loss", math.nan) - train.get("total_loss", math.nan), learning_rate=lr,
        eta_seconds=elapsed / max(done, 1) * (epochs - epoch - 1), elapsed_seconds=elapsed,
        val_stft_loss=val.get("stft_loss", 0.0), val_mag_recon_loss=val.get("mag_recon_loss", 0.0),
        val_if_recon_loss=val.get("if_recon_loss", 0.0), val_components=other,
        nonfinite_steps=int(train.get("nonfinite", 0)))


def train(model: nn.Module, train_loader: Iterable[Any], val_loader: Iterable[Any], loss_config: LossSpec = None,
          *, epochs: int, optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
          device: torch.device | str | None = None, grad_clip_norm: float | None = 1.0,
          callbacks: Sequence[Callback] = (), log_interval: int = 10, checkpoint_dir: str | Path | None = None,
          resume_from: str | Path | None = None, free_bits: float = 0.1,
          divergence_patience: int = 5, collapse_threshold: float = 0.5,
          new_segment: str | None = None) -> MetricsHistory:
    """Train for ``epochs``: the CombinedLoss (and its STFT module) is built once, here, at the start.

    Each epoch evaluates the weight schedules, emits StepMetrics/EpochMetrics to ``callbacks``, warns on
    divergence and posterior collapse, and (with ``checkpoint_dir``) atomically writes ``last.pt``,
    ``best.pt`` and ``history.json``. ``resume_from`` continues from a ``last.pt`` made with the same loss
    (config and plugin versions); a different loss is an error unless ``new_segment`` gives the reason to
    accept it, which starts a new best-tracking segment (recorded in the history; the old ``best.pt`` is
    kept as ``best.before-epoch<N>.pt``).
    """
    device = torch.device(device) if device is not None else None
    if device is not None:
        model.to(device)
    loss = resolve_loss(loss_config, device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    history, start, best = MetricsHistory(), 0, math.inf
    if resume_from is not None:  # everything is checked before anything is restored
        state = load_training_state(resume_from)
        check_model_fits(state["model"], model, resume_from)
        changes = loss_changes(state.get("config"), state.get("provenance"), loss)
        if changes and new_segment is None:
            raise LossChangedError(f"{resume_from}: the loss differs from the checkpoint's: {'; '.join(changes)}; "
                                   "resume with the run's loss, or pass new_segment= to accept the change",
                                   changes)
        drift = lock_differences(state.get("provenance", {}))
        if drift:
            warnings.warn(f"{resume_from}: installed plugins differ from the checkpoint's: " + "; ".join(drift),
                          RuntimeWarning, stacklevel=2)
        history = MetricsHistory.from_dict(state["history"], str(resume_from))
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
    out_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    began = time.perf_counter()
    for epoch in range(start, epochs):
        train_means = train_epoch(model, train_loader, optimizer, loss, epoch=epoch, total_epochs=epochs,
                                  device=device, grad_clip_norm=grad_clip_norm, callbacks=callbacks,
                                  log_interval=log_interval, free_bits=free_bits)
        val_means = validate_epoch(model, val_loader, loss, epoch=epoch, total_epochs=epochs, device=device,
                                   free_bits=free_bits)
        metrics = _epoch_metrics(epoch, epochs, train_means, val_means, optimizer.param_groups[0]["lr"],
                                 time.perf_counter() - began, epoch - start + 1)
        history.add_epoch(metrics)
        rises = _consecutive_rises(history.epochs)  # from the history, so a resumed run counts on
        if rises >= divergence_patience:
            warnings.warn(f"epoch {epoch}: validation loss rose {rises} epochs in a row "
                          f"({metrics.val_loss:.4g}); training may be diverging", RuntimeWarning, stacklevel=2)
        if metrics.kl_divergence < collapse_threshold:
            warnings.warn(f"epoch {epoch}: raw KL {metrics.kl_divergence:.3g} < {collapse_threshold}; "
                          "possible posterior collapse", RuntimeWarning, stacklevel=2)
        if out_dir is not None:  # saved before callbacks run: an exception in one never loses the epoch
            improved = metrics.val_loss < best
            best = min(best, metrics.val_loss) if math.isfinite(metrics.val_loss) else best
            state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "config": converter.unstructure(loss.config) if loss is not None else None,
                     "history": history.to_dict(), "provenance": make_lock(loss) if loss is not None else {},
                     "rng": rng_state(),
                     "best_val": best}
            history.save(out_dir / "history.json")
            save_checkpoint(out_dir / "last.pt", state)
            if improved:
                save_checkpoint(out_dir / "best.pt", state)
        _emit(callbacks, metrics)
    return history
