"""One pass over a loader for any model: an adapter turns ``(model, inputs)`` into the loss's batch.

Step values accumulate on the device; they become Python floats only when a window of steps is reported
(every ``log_interval`` steps and at the end) and at the end of the pass. Under torch.distributed each
window's sums and counts, and the pass's, are all-reduced once (one all_reduce per report, never per step), so
every rank reports the global figure: the loss's components and its update step's figures alike. Nothing here
knows which terms a loss has: whatever the loss returns is averaged and reported.

A loss with stateful terms (``loss.update(batch)``, e.g. a discriminator's step) gets that call once per
training batch, before its forward, and is put in eval mode for validation (where nothing updates). What
``update`` returns are metrics, kept apart from the loss's components (``Means.metrics`` names them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sized
from typing import Any, Protocol

import attrs
import torch
from torch import nn

from distill_core.terms.base import Batch


class Adapter(Protocol):
    """Turns a model and one loader item into the loss's batch.

    ``reads`` holds every batch key some term reads, so an adapter computes costly extras (e.g. waveforms
    of spectrograms) only when asked. An adapter may also define ``measure(batch)``: extra 0-dim tensors
    averaged over validation (e.g. a statistic of the latent for collapse checks).
    """

    def __call__(self, model: nn.Module, inputs: Any, reads: frozenset[str]) -> Batch: ...


class Loss(Protocol):
    """What a pass needs of a loss: a CombinedLoss, or any module with the same call."""

    def __call__(
        self,
        batch: Batch,
        *,
        epoch: int | None = None,
        total_epochs: int | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> dict[str, torch.Tensor]: ...


@attrs.frozen
class Window:
    """The mean of every loss output over the steps since the last report; ``step`` is the 0-based index of
    the window's last step in the pass."""

    epoch: int
    step: int
    total_steps: int
    means: dict[str, float]
    learning_rate: float
    step_time_s: float
    metrics: frozenset[str] = frozenset()  # the keys of ``means`` that the loss's update step gave


class Means(dict):
    """A pass's averages by key (a plain ``dict[str, float]`` to every reader), and which of the keys are
    metrics of the loss's update step rather than components of its forward."""

    def __init__(self, values: Mapping[str, float] | None = None, metrics: Iterable[str] = ()) -> None:
        super().__init__(values or {})
        self.metrics = frozenset(k for k in metrics if k in self)


class Accumulator:
    """Running sums of 0-dim tensors on the device; ``means`` is the only host sync.

    Each key counts the steps that gave it (host-side ints): a figure some steps leave out (a stateful
    term's update on a schedule) averages over the steps that had it. ``count`` is the number of steps.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.count = 0

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
            self.counts[key] = self.counts.get(key, 0) + 1
        self.count += 1

    def means(self, reduce: bool = False) -> dict[str, float]:
        """Averages as floats; with ``reduce`` and an initialised process group, global averages (every rank
        must hold the same keys: schedules drawn from a seeded generator keep the ranks in step)."""
        if not self.sums:
            return {}
        keys = sorted(self.sums)
        counts = self.sums[keys[0]].new_tensor([float(self.counts[k]) for k in keys])
        packed = torch.cat([torch.stack([self.sums[k] for k in keys]), counts])
        if reduce and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(packed)
        values = packed.tolist()
        sums, totals = values[: len(keys)], values[len(keys) :]
        out = {k: v / n for k, v, n in zip(keys, sums, totals)}
        if "nonfinite" in out:
            out["nonfinite"] = round(sums[keys.index("nonfinite")])
        return out

    def reset(self) -> None:
        self.sums, self.counts, self.count = {}, {}, 0


def inputs_on(item: Any, device: torch.device | None) -> Any:
    """A loader item's inputs (the first element of a tuple or list) on ``device``."""
    x = item[0] if isinstance(item, (list, tuple)) else item
    return x.to(device, non_blocking=True) if device is not None and isinstance(x, torch.Tensor) else x


def clip_or_zero(params: list[nn.Parameter], clip_norm: float | None) -> torch.Tensor:
    """Clip gradients; where their norm is not finite, zero them (no sync). Return the 'bad step' flag."""
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return torch.zeros(())
    norm = torch.nn.utils.clip_grad_norm_(with_grad, clip_norm if clip_norm else math.inf)
    ok = torch.isfinite(norm)
    for p in with_grad:
        p.grad.nan_to_num_(0.0, 0.0, 0.0).mul_(ok)  # type: ignore[union-attr]
    return (~ok).float()


def optimizer_step(optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> None:
    """Step, or skip a non-finite step leaving parameters and optimizer state bit-identical.

    Fused optimizers (``Adam(fused=True)``, ``AdamW``, ``SGD``) take the flag on the device, as torch's
    GradScaler hands it to them (``found_inf``): no host sync. Any other optimizer costs one sync per step,
    to decide on the host whether to call ``step()`` at all.
    """
    fused = getattr(optimizer, "_step_supports_amp_scaling", False) and all(
        group.get("fused") for group in optimizer.param_groups
    )  # a loaded state may have turned it off
    if fused:
        optimizer.found_inf = bad.to(torch.float32)  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
    elif not bad.any().item():  # the documented one-sync fallback
        optimizer.step()


def _reads(loss: Any) -> frozenset[str]:
    return frozenset(getattr(loss, "reads", ()))


class LossParameterError(ValueError):
    """The generator's optimizer holds a parameter the loss owns (a stateful term trains it itself)."""


def check_optimizer(optimizer: torch.optim.Optimizer, loss: Any) -> None:
    """Refuse an optimizer that holds a parameter of ``loss``: call it before a loop's first step.

    A stateful term (a discriminator) owns its parameters and its own optimizer; the model's optimizer
    stepping them too would train them on the generator's loss. Host-side only (parameter identities).
    """
    named = getattr(loss, "named_parameters", None)
    if not callable(named):
        return
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for name, param in named(prefix="loss"):
        if id(param) in held:
            raise LossParameterError(
                f"the model's optimizer holds the loss's parameter {name!r}; give the optimizer "
                "model.parameters() only (a stateful term trains its own parameters with its own optimizer)"
            )


def update_step(loss: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """The loss's update step on this batch (its stateful terms' own steps), or nothing for a loss without one."""
    update = getattr(loss, "update", None)
    return dict(update(batch) or {}) if callable(update) else {}


def end_epoch_step(loss: Any) -> None:
    """The loss's per-epoch step (its stateful terms' own, e.g. a per-epoch learning-rate schedule), if any."""
    end_epoch = getattr(loss, "end_epoch", None)
    if callable(end_epoch):
        end_epoch()


def _set_mode(loss: Any, training: bool) -> bool:
    """Put a module loss in train or eval mode; return the mode it had (True for a plain function)."""
    was = getattr(loss, "training", True)
    if isinstance(loss, nn.Module):
        loss.train(training)
    return was


def _backward(loss: Any, out: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """The loss's own backward (a gradient balancer's figures), else ``total_loss.backward()``."""
    backward = getattr(loss, "backward", None)
    if callable(backward):
        return backward(out)
    out["total_loss"].backward()
    return {}


def train_pass(
    model: nn.Module,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    loss: Loss,
    adapter: Adapter,
    *,
    epoch: int = 0,
    total_epochs: int = 1,
    weights: Mapping[str, float] | None = None,
    device: torch.device | None = None,
    clip_norm: float | None = 1.0,
    log_interval: int = 10,
    report: Callable[[Window], None] | None = None,
    cancel_event: Any = None,
) -> dict[str, float]:
    """Train one epoch: the mean of every loss output over it (``nonfinite``: how many steps were skipped), and
    of every figure of the loss's update step, which runs on each batch before the loss (``Means.metrics``).

    ``weights`` overrides some weights for every step (by term or group name); ``report`` gets a Window
    every ``log_interval`` steps and at the end; ``cancel_event`` (anything with ``is_set()``) is checked
    between steps. An optimizer holding a parameter of the loss is refused (LossParameterError).

    Under torch.distributed every Window is the global one: at each report step every rank all-reduces its
    window (given a ``report`` or not, so that ranks never wait on each other), and reports the same figures.
    """
    check_optimizer(optimizer, loss)
    ranks = torch.distributed.is_available() and torch.distributed.is_initialized()
    reads = _reads(loss)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    _set_mode(loss, True)
    epoch_acc, window = Accumulator(), Accumulator()
    metrics: set[str] = set()
    total_steps = len(loader) if isinstance(loader, Sized) else 0
    tick = time.perf_counter()
    cancelled = False
    for step, item in enumerate(loader):
        if cancel_event is not None and cancel_event.is_set():
            cancelled = True
            break
        batch = adapter(model, inputs_on(item, device), reads)
        figures = update_step(loss, batch)  # before the loss: the generator's pass sees the updated state
        out = loss(batch, epoch=epoch, total_epochs=total_epochs, weights=weights)
        optimizer.zero_grad(set_to_none=True)
        balance = _backward(loss, out)
        bad = clip_or_zero(params, clip_norm)
        optimizer_step(optimizer, bad)
        logged = {**{k: v for k, v in out.items() if k != "nonfinite"}, **balance}
        total = out["total_loss"]
        flags = [
            out["nonfinite"].detach().float() if "nonfinite" in out else (~torch.isfinite(total)).float(),
            bad.to(total.device),
        ]
        if "nonfinite" in balance:
            flags.append(balance["nonfinite"].to(flags[0]))
        logged["nonfinite"] = torch.stack(flags).amax()
        logged.update(figures)
        metrics.update(figures)
        epoch_acc.add(logged)
        window.add(logged)
        if (report is not None or ranks) and ((step + 1) % log_interval == 0 or step + 1 == total_steps):
            now = time.perf_counter()
            means = window.means(reduce=True)  # one all_reduce under torch.distributed: the global window
            if report is not None:
                report(
                    Window(
                        epoch,
                        step,
                        total_steps,
                        means,
                        optimizer.param_groups[0]["lr"],
                        (now - tick) / window.count,
                        frozenset(k for k in metrics if k in means),
                    )
                )
            window.reset()
            tick = now
    if not cancelled:
        end_epoch_step(loss)  # a completed epoch: per-epoch schedules of stateful terms step once
    return Means(epoch_acc.means(reduce=True), metrics)


@torch.no_grad()
def evaluate_pass(
    model: nn.Module,
    loader: Iterable[Any],
    loss: Loss,
    adapter: Adapter,
    *,
    epoch: int = 0,
    total_epochs: int = 1,
    weights: Mapping[str, float] | None = None,
    device: torch.device | None = None,
) -> dict[str, float]:
    """The mean of every loss output over a loader, and of the adapter's ``measure`` when it has one.

    The loss is in eval mode meanwhile (a stateful term neither updates nor counts), then in its mode before."""
    reads = _reads(loss)
    measure = getattr(adapter, "measure", None)
    model.eval()
    was_training = _set_mode(loss, False)
    acc = Accumulator()
    try:
        for item in loader:
            batch = adapter(model, inputs_on(item, device), reads)
            out = loss(batch, epoch=epoch, total_epochs=total_epochs, weights=weights)
            if callable(measure):
                out = {**out, **measure(batch)}
            acc.add(out)
    finally:
        _set_mode(loss, was_training)
    return acc.means(reduce=True)
