"""The seed's VAE through the generic loop: ``model(x) -> (recon, mu, logvar)`` as the loss's batch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from distill_core.seed.losses import raw_kl
from distill_core.terms.base import Batch

Views = Callable[[Mapping[str, torch.Tensor], frozenset], Mapping[str, torch.Tensor]]


class VAEAdapter:
    """``recon``, ``target`` (the input), ``mu`` and ``logvar``; ``views`` adds derived entries (the
    waveforms ``recon_wave``/``target_wave``) only when some term reads them."""

    outputs = ("recon", "mu", "logvar")  # the model's, carrying its gradient
    given = ("target",)  # the loader's

    def __init__(self, views: Views | None = None) -> None:
        self.views = views

    def provides(self) -> tuple[str, ...]:
        """Every batch key this adapter can give a loss (a view's keys only when some term reads them)."""
        return (*self.outputs, *self.given, *getattr(self.views, "keys", ()))

    def carries_gradient(self) -> tuple[str, ...]:
        """The keys the model's output carries a gradient to (the only ones a balancer may scale at)."""
        return (*self.outputs, *getattr(self.views, "differentiable", ()))

    def __call__(self, model: nn.Module, inputs: Any, reads: frozenset[str]) -> Batch:
        recon, mu, logvar = model(inputs)
        batch = {"recon": recon, "target": inputs, "mu": mu, "logvar": logvar}
        wanted = reads - batch.keys()
        if self.views is not None and wanted:
            batch.update(self.views(batch, frozenset(wanted)))
        return batch

    def measure(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The raw KL (no free bits) over validation, for posterior-collapse checks."""
        return {"kl_divergence": raw_kl(batch["mu"], batch["logvar"])}
