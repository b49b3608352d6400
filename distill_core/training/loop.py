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

from ..atomic import signals_deferred
from ..combined import CombinedLoss
from ..config import converter
from ..lock import lock_differences, loss_changes, make_lock
from ..loss_config import LossConfig
from ..models.losses import combined_for, raw_kl, seed_kl_weight, seed_prebuilt, vae_loss
from .checkpoint import (CheckpointError, LossChangedError, check_model_fits, load_training_state, restore_rng,
                         rng_state, save_checkpoint)
from .metrics import EpochMetrics, MetricsHistory, StepMetrics, overfitting_gap, step_fields, term_values

Callback = Callable[[Any], None]
LossSpec = LossConfig | CombinedLoss | None
LEGACY_TERMS = ("recon_loss", "kl_loss")  # the legacy vae_loss's two terms (MSE and free-bits KL)


def resolve_loss(loss_config: LossSpec, device: torch.device | str | None = None,
                 stft_loss_fn: nn.Module | None = None, *, fresh: bool = False) -> CombinedLoss | None:
    """A CombinedLoss for a config, the given one, or None for the legacy loss.

    ``stft_loss_fn`` is the seed's prebuilt STFT module (``create_stft_loss`` or auraloss's own), used as
    the ``stft`` term. A config is built once and reused by later calls with the same config object (the
    seed calls ``train_epoch`` each epoch with its config; a balancer's averages then carry over), unless
    ``fresh``: a run of ``train`` owns its loss and its state.
    """
    if loss_config is None or isinstance(loss_config, CombinedLoss):
        loss = loss_config
    elif fresh:
        loss = CombinedLoss(loss_config, prebuilt=seed_prebuilt(stft_loss_fn))
    else:
        loss = combined_for(loss_config, stft_loss_fn)
    return loss.to(device) if loss is not None and device is not None else loss


def _check_seed_order(kl_weight: Any, where: str) -> None:
    if isinstance(kl_weight, (LossConfig, CombinedLoss)):
        raise TypeError(f"{where}: the 4th positional argument is kl_weight (the seed's order: model, loader, "
                        f"optimizer, kl_weight, device, ...); pass the loss as loss_config=...")


def _inputs(batch: Any, device: torch.device | None) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    return x.to(device, non_blocking=True) if device is not None else x


def _kl_weight(loss: CombinedLoss | None, kl_weight: float | None, epoch: int, total_epochs: int) -> float:
    if kl_weight is not None:
        return float(kl_weight)
    if loss is not None and "kl" in loss.config.terms:
        return loss.weights(epoch, total_epochs)["kl"]
    return 1.0 if loss is None else 0.0


def term_keys(loss: CombinedLoss | None) -> tuple[str, ...]:
    """The output keys of the terms a run computes: every configured term, or the legacy loss's two."""
    return loss.term_keys if loss is not None else LEGACY_TERMS


Views = Callable[[Mapping[str, torch.Tensor], frozenset], Mapping[str, torch.Tensor]]


def compute_losses(loss: CombinedLoss | None, model_out: tuple[torch.Tensor, ...], target: torch.Tensor, *,
                   epoch: int, total_epochs: int, kl_weight: float | None, free_bits: float = 0.1,
                   views: Views | None = None) -> dict[str, torch.Tensor]:
    """The combined loss's dict, or the legacy ``vae_loss`` in the same shape.

    An explicit ``kl_weight`` keeps the seed's meaning: 0 or less leaves the KL term out of the total.
    """
    recon, mu, logvar = model_out
    weight = None if kl_weight is None else seed_kl_weight(kl_weight)
    if loss is None:
        total, recon_loss, kl = vae_loss(recon, target, mu, logvar, 1.0 if weight is None else weight, free_bits)
        return {"total_loss": total, "recon_loss": recon_loss, "kl_loss": kl,
                "nonfinite": (~torch.isfinite(total)).to(total.dtype)}
    batch = {"recon": recon, "target": target, "mu": mu, "logvar": logvar}
    wanted = loss.reads - batch.keys()
    if views is not None and wanted:  # e.g. waveforms, computed only when some term reads them
        batch.update(views(batch, frozenset(wanted)))
    if weight is not None and "kl" not in loss.config.terms:
        weight = None
    return loss(batch, epoch=epoch, total_epochs=total_epochs, kl_weight=weight)


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


def _clip_or_zero(params: list[nn.Parameter], clip_norm: float | None) -> torch.Tensor:
    """Clip gradients; where their norm is not finite, zero them (no sync). Return the 'bad step' flag."""
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return torch.zeros(())
    norm = torch.nn.utils.clip_grad_norm_(with_grad, clip_norm if clip_norm else math.inf)
    ok = torch.isfinite(norm)
    for grad in (p.grad for p in with_grad):
        assert grad is not None
        grad.nan_to_num_(0.0, 0.0, 0.0).mul_(ok)
    return (~ok).float()


def optimizer_step(optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> None:
    """Step, or skip a non-finite step leaving parameters and optimizer state bit-identical.

    Fused optimizers (``Adam(fused=True)``, ``AdamW``, ``SGD``) take the flag on the device, as torch's
    GradScaler hands it to them (``found_inf``): no host sync. Any other optimizer costs one sync per step,
    to decide on the host whether to call ``step()`` at all.
    """
    fused = getattr(optimizer, "_step_supports_amp_scaling", False) and \
        all(group.get("fused") for group in optimizer.param_groups)  # a loaded state may have turned it off
    if fused:
        optimizer.found_inf = bad.to(torch.float32)  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
    elif not bad.any().item():  # the documented one-sync fallback
        optimizer.step()


def train_epoch(model: nn.Module, train_loader: Iterable[Any], optimizer: torch.optim.Optimizer,
                kl_weight: float | None = None, device: torch.device | str | None = None,
                gradient_clip_norm: float | None = 1.0, loss_config: LossSpec = None,
                stft_loss_fn: nn.Module | None = None, epoch: int = 0, callback: Callback | None = None,
                cancel_event: Any = None, *, total_epochs: int = 1, callbacks: Sequence[Callback] = (),
                log_interval: int = 10, free_bits: float = 0.1, views: Views | None = None) -> dict[str, float]:
    """One training epoch, called as the seed calls it; returns the epoch's mean of every loss component.

    ``kl_weight`` None uses the config's schedule at ``epoch`` of ``total_epochs``; a number overrides it
    (0 or less leaves KL out, as the seed does). ``callback``/``callbacks`` get StepMetrics every
    ``log_interval`` steps (1: every step) and at the epoch's end: values are averaged on the device over
    the window, so logging costs one host sync per window, not per step. ``cancel_event`` (anything with
    ``is_set()``) is checked between steps. The result has our keys (``total_loss``, ``<term>_loss``,
    ``nonfinite``) and the seed's (``train_loss``). ``views`` adds derived batch entries (waveforms) that
    some term reads.
    """
    _check_seed_order(kl_weight, "train_epoch")
    device = torch.device(device) if device is not None else None
    loss = resolve_loss(loss_config, device, stft_loss_fn)
    keys = term_keys(loss)
    weight = _kl_weight(loss, kl_weight, epoch, total_epochs)
    listeners = [*([callback] if callback is not None else []), *callbacks]
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    epoch_acc, window = Accumulator(), Accumulator()
    total_steps = len(train_loader) if isinstance(train_loader, Sized) else 0
    tick = time.perf_counter()
    for step, batch in enumerate(train_loader, start=1):
        if cancel_event is not None and cancel_event.is_set():
            break
        x = _inputs(batch, device)
        out = compute_losses(loss, model(x), x, epoch=epoch, total_epochs=total_epochs, kl_weight=kl_weight,
                             free_bits=free_bits, views=views)
        optimizer.zero_grad(set_to_none=True)
        if loss is not None:
            balance = loss.backward(out)
        else:
            out["total_loss"].backward()
            balance = {}
        bad = _clip_or_zero(params, gradient_clip_norm)
        optimizer_step(optimizer, bad)
        logged = {**{k: v for k, v in out.items() if k != "nonfinite"}, **balance}
        flags = [out["nonfinite"].detach().float(), bad.to(out["nonfinite"].device)]
        if "nonfinite" in balance:
            flags.append(balance["nonfinite"].to(flags[0]))
        logged["nonfinite"] = torch.stack(flags).amax()
        epoch_acc.add(logged)
        window.add(logged)
        if listeners and (step % log_interval == 0 or step == total_steps):
            means = window.means()
            now = time.perf_counter()
            _emit(listeners, StepMetrics(
                epoch=epoch, step=step, total_steps=total_steps, train_loss=means["total_loss"],
                recon_loss=means.get("recon_loss", 0.0), kl_loss=means.get("kl_loss", 0.0), kl_weight=weight,
                learning_rate=optimizer.param_groups[0]["lr"], step_time_s=(now - tick) / window.count,
                nonfinite_steps=int(means.get("nonfinite", 0)), **step_fields(means, keys)))
            window.reset()
            tick = now
    means = epoch_acc.means(reduce=True)
    if "total_loss" in means:
        means["train_loss"] = means["total_loss"]
    return means


@torch.no_grad()
def validate_epoch(model: nn.Module, val_loader: Iterable[Any], kl_weight: float | None = None,
                   device: torch.device | str | None = None, loss_config: LossSpec = None,
                   stft_loss_fn: nn.Module | None = None, *, epoch: int = 0, total_epochs: int = 1,
                   free_bits: float = 0.1, views: Views | None = None) -> dict[str, float]:
    """Mean validation losses, called as the seed calls it, plus ``kl_divergence``: the raw KL (no free
    bits) for collapse checks. Keys: ours (``total_loss``, ``<term>_loss``) and the seed's (``val_loss``,
    ``val_recon_loss``, ``val_kl_loss``, ``val_<term>_loss``)."""
    _check_seed_order(kl_weight, "validate_epoch")
    device = torch.device(device) if device is not None else None
    loss = resolve_loss(loss_config, device, stft_loss_fn)
    model.eval()
    acc = Accumulator()
    for batch in val_loader:
        x = _inputs(batch, device)
        recon, mu, logvar = model(x)
        out = compute_losses(loss, (recon, mu, logvar), x, epoch=epoch, total_epochs=total_epochs,
                             kl_weight=kl_weight, free_bits=free_bits, views=views)
        out["kl_divergence"] = raw_kl(mu, logvar)
        acc.add(out)
    means = acc.means(reduce=True)
    seed_keys = {"val_loss": "total_loss", "val_recon_loss": "recon_loss", "val_kl_loss": "kl_loss",
                 **{f"val_{k}": k for k in term_keys(loss)}}
    means.update({seed: means[ours] for seed, ours in seed_keys.items() if ours in means})
    return means


def _consecutive_rises(epochs: Sequence[EpochMetrics]) -> int:
    """How many epochs in a row, up to the last, raised the validation loss."""
    rises = 0
    for before, after in zip(epochs[-2::-1], epochs[::-1]):
        if not after.val_loss > before.val_loss:
            break
        rises += 1
    return rises


def _epoch_metrics(epoch: int, epochs: int, train: Mapping[str, float], val: Mapping[str, float], lr: float,
                   elapsed: float, done: int, keys: Sequence[str], weights: Mapping[str, float]) -> EpochMetrics:
    train_loss, val_loss = train.get("total_loss", math.nan), val.get("total_loss", math.nan)
    return EpochMetrics(
        epoch=epoch, total_epochs=epochs, train_loss=train_loss, val_loss=val_loss,
        val_recon_loss=val.get("recon_loss", 0.0), val_kl_loss=val.get("kl_loss", 0.0),
        kl_divergence=val.get("kl_divergence", 0.0), overfitting_gap=overfitting_gap(train_loss, val_loss),
        learning_rate=lr, eta_seconds=elapsed / max(done, 1) * (epochs - epoch - 1), elapsed_seconds=elapsed,
        val_stft_loss=val.get("stft_loss", 0.0), val_mag_recon_loss=val.get("mag_recon_loss", 0.0),
        val_if_recon_loss=val.get("if_recon_loss", 0.0), components=term_values(train, keys),
        val_components=term_values(val, keys), weights=dict(weights), nonfinite_steps=int(train.get("nonfinite", 0)),
        balancer={k: v for k, v in train.items() if k.startswith(("ratio_", "ema_norm_"))})


def default_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, fused where torch has the kernel for the parameters' device (it skips bad steps without a sync)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:  # a device without the fused kernel
        return torch.optim.Adam(params, lr=lr)


def _step_recorder(history: MetricsHistory) -> Callback:
    def record(metrics: Any) -> None:
        if isinstance(metrics, StepMetrics):
            history.add_step(metrics)

    return record


def train(model: nn.Module, train_loader: Iterable[Any], val_loader: Iterable[Any], loss_config: LossSpec = None,
          *, epochs: int, optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
          device: torch.device | str | None = None, grad_clip_norm: float | None = 1.0,
          callbacks: Sequence[Callback] = (), log_interval: int = 10, checkpoint_dir: str | Path | None = None,
          resume_from: str | Path | None = None, free_bits: float = 0.1,
          divergence_patience: int = 5, collapse_threshold: float = 0.5, cancel_event: Any = None,
          stft_loss_fn: nn.Module | None = None, views: Views | None = None,
          new_segment: str | None = None) -> MetricsHistory:
    """Train for ``epochs``: the CombinedLoss (and its STFT module) is built once, here, at the start.

    Each epoch evaluates the weight schedules, emits StepMetrics/EpochMetrics to ``callbacks``, warns on
    divergence and posterior collapse, and (with ``checkpoint_dir``) atomically writes ``last.pt``,
    ``best.pt`` and ``history.json``. ``resume_from`` continues from a ``last.pt`` made with the same loss
    (config and plugin versions); a different loss is an error unless ``new_segment`` gives the reason to
    accept it, which starts a new best-tracking segment (recorded in the history; the old ``best.pt`` is
    kept as ``best.before-epoch<N>.pt``). Logged steps go into the history too. The default optimizer is a
    fused Adam, which skips a non-finite step without a host sync; ``cancel_event`` (anything with
    ``is_set()``) stops between steps, keeping the finished epochs. ``views`` adds derived batch entries
    (waveforms) that some term reads.
    """
    device = torch.device(device) if device is not None else None
    if device is not None:
        model.to(device)
    loss = resolve_loss(loss_config, device, stft_loss_fn, fresh=True)
    keys = term_keys(loss)
    optimizer = optimizer or default_optimizer(model, lr)
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
        elif loss is not None and loss.balancer is not None and "balancer" in state:
            loss.balancer.load_state_dict(state["balancer"])  # the gradient norms' running averages
    out_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    listeners = [_step_recorder(history), *callbacks]
    began = time.perf_counter()
    for epoch in range(start, epochs):
        train_means = train_epoch(model, train_loader, optimizer, None, device, grad_clip_norm, loss,
                                  epoch=epoch, cancel_event=cancel_event, total_epochs=epochs,
                                  callbacks=listeners, log_interval=log_interval, free_bits=free_bits,
                                  views=views)
        if cancel_event is not None and cancel_event.is_set():
            break  # the unfinished epoch is not recorded: the files keep the last finished one
        val_means = validate_epoch(model, val_loader, None, device, loss, epoch=epoch, total_epochs=epochs,
                                   free_bits=free_bits, views=views)
        weights = loss.weights(epoch, epochs) if loss is not None else {}
        metrics = _epoch_metrics(epoch, epochs, train_means, val_means, optimizer.param_groups[0]["lr"],
                                 time.perf_counter() - began, epoch - start + 1, keys, weights)
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
                     **({"balancer": loss.balancer.state_dict()} if loss is not None and loss.balancer is not None
                        else {}),
                     "best_val": best}
            # Checkpoints first: a failed write (disk full) then leaves history.json at the epochs last.pt
            # holds, and a resume rewrites it from the checkpoint's own history. Ctrl-C / SIGTERM wait.
            with signals_deferred():
                save_checkpoint(out_dir / "last.pt", state)
                if improved:
                    save_checkpoint(out_dir / "best.pt", state)
                history.save(out_dir / "history.json")
        _emit(callbacks, metrics)
    return history
