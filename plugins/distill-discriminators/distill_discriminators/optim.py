"""The discriminator's optimizer and schedule from their configs, and a device-side skip of a bad update."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .config import OptimizerConfig, SchedulerConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], config: OptimizerConfig) -> torch.optim.Optimizer:
    """Adam or AdamW with the fused kernel (CPU and CUDA have it): it takes a non-finite flag on the device."""
    cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    beta1, beta2 = config.betas
    return cls(
        list(params),
        lr=config.lr,
        betas=(beta1, beta2),
        eps=config.eps,
        weight_decay=config.weight_decay,
        fused=True,
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: SchedulerConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The configured schedule, or None."""
    if config.name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.gamma)
    if config.name == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, CosineWithWarmup(config.warmup_steps, config.total_steps))
    return None


class CosineWithWarmup:
    """The lr factor: linear from 0 over ``warmup`` steps, then half a cosine down to 0 at ``total``."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def step_unless(optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> None:
    """``optimizer.step()``, which leaves parameters and state untouched where ``bad`` (a 0-dim bool tensor) is
    true, decided on the device: fused Adam/AdamW read it as GradScaler's ``found_inf``. No host sync.

    Fused is read from the param groups: a copied or unpickled optimizer (``copy.deepcopy`` of an Adversarial)
    keeps them but not the instance flag torch sets in ``__init__``."""
    fused = isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW) and all(
        g.get("fused") for g in optimizer.param_groups
    )
    if not (fused or getattr(optimizer, "_step_supports_amp_scaling", False)):
        raise TypeError(f"{type(optimizer).__name__} cannot skip a step on the device; use a fused optimizer")
    optimizer.found_inf = bad.to(torch.float32)  # type: ignore[attr-defined]
    try:
        optimizer.step()
    finally:
        del optimizer.found_inf  # type: ignore[attr-defined]
