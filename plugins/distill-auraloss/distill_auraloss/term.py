"""The base of every auraloss term: build the auraloss module once, check the batch, call it in float32+."""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import attrs
import torch
from torch import nn

from distill_core import LossTerm
from distill_core.terms.base import Batch, BatchError, check_pair, upcast

WAVEFORMS = {"recon": "B, C, N", "target": "B, C, N"}


def auraloss_kwargs(config: Any, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The config's fields as auraloss keyword arguments: without ``weight``, tuples as lists."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in attrs.asdict(config, recurse=False).items()
        if k != "weight" and k not in drop
    }


class AuralossTerm(LossTerm):
    """A term that runs one auraloss loss module on [B, C, N] waveforms ``recon`` (its input) and ``target``.

    Subclasses set ``name``, ``config_class`` and ``wraps`` (the auraloss class); ``build`` passes the config's
    fields to it as keyword arguments unless overridden; ``shortest`` is the shortest signal it accepts.
    """

    requires = ("recon", "target")
    layouts: ClassVar[dict[str, str]] = WAVEFORMS
    channels: ClassVar[int | None] = None  # a pinned channel count (dim 1), e.g. 2 for stereo
    wraps: ClassVar[type[nn.Module]]

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.loss = self.build(config)
        self.min_samples = self.shortest(config)

    @classmethod
    def auraloss_name(cls) -> str:
        return f"{cls.wraps.__module__}.{cls.wraps.__qualname__}"

    def build(self, config: Any) -> nn.Module:
        """The auraloss module, built once."""
        return self.wraps(**auraloss_kwargs(config))

    def shortest(self, config: Any) -> int:
        """The fewest samples per signal the auraloss module can take."""
        return 1

    def length_reason(self) -> str:
        return "expected at least 1 sample"

    def follow_dtype(self, dtype: torch.dtype) -> None:
        """Bring filterbanks and filters (float32 in auraloss) to the input's float dtype, once per change."""
        for t in itertools.chain(self.loss.buffers(), self.loss.parameters()):
            if t.is_floating_point():
                if t.dtype != dtype:
                    self.loss.to(dtype)
                return

    def checked(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """recon and target checked, contiguous, in one float dtype of float32 or wider."""
        x, y = check_pair(self.name, batch, "recon", "target", self.layouts["recon"], channels=self.channels)
        if x.shape[-1] < self.min_samples:
            raise BatchError(
                f"{self.name}: batch['recon'] has {x.shape[-1]} samples per signal, too short for "
                f"{self.auraloss_name()}; {self.length_reason()}"
            )
        x, y = upcast(x.contiguous(), y.contiguous())  # auraloss reshapes with .view
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        self.follow_dtype(x.dtype)
        return x, y

    def forward(self, batch: Batch) -> torch.Tensor:
        x, y = self.checked(batch)
        with torch.autocast(x.device.type, enabled=False):  # FFTs, logs and divisions in float32 or wider
            return self.loss(x, y)


class PerChannelTerm(AuralossTerm):
    """An auraloss loss computed per [batch, channel] and then reduced: it has a value per example, and
    with ``reduction = "mean"`` it is the mean over channels of a per-channel loss (pairwise, for PIT)."""

    pairwise = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        unreduced = self.build(config)
        # torch's stub types Module.__setattr__'s value as Tensor | Module; any attribute may be set at runtime
        unreduced.reduction = "none"  # type: ignore[assignment]
        self._unreduced = (unreduced,)  # a tuple: not a second registered submodule (the same parameters: none)

    def per_example(self, batch: Batch) -> torch.Tensor:
        """The loss of each example averaged over its channels, [B] (for permutation-invariant training)."""
        x, y = self.checked(batch)
        with torch.autocast(x.device.type, enabled=False):
            return self._unreduced[0](x, y).flatten(1).mean(dim=1)
