"""The ``commitment`` and ``codebook`` terms: a stop-gradient MSE per residual stage, reduced as the anchors do.

Per stage, both anchors take the mean squared error over a stage's channels and frames for each example, then
the mean over the batch (dac/nn/quantize.py, ``VectorQuantize.forward`` then ``ResidualVectorQuantize.forward``;
audiocraft/quantization/core_vq.py, ``VectorQuantization.forward``, one mean over all elements, equal since every
example has as many). The stages are then summed (DAC) or averaged (audiocraft/quantization/vq.py,
``ResidualVectorQuantizer.forward``): ``stage_reduction``.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import accumulate
from typing import ClassVar

import torch

from distill_core import BatchError, LossTerm
from distill_core.terms.base import Batch, check_pair, upcast

from .config import CodebookConfig, CommitmentConfig, StagesConfig

STACKED = "B, Q, D, T"
CONCATENATED = "B, C, T"


def layouts_for(config: StagesConfig) -> Mapping[str, str]:
    """The layout of ``z_e`` and ``z_q`` under this config: stages stacked, or concatenated along channels."""
    layout = STACKED if config.stacked else CONCATENATED
    return {"z_e": layout, "z_q": layout}


def _stage_widths(term: str, channels: int, codebook_dims: tuple[int, ...]) -> list[int]:
    """The widths of the first k stages whose concatenation has ``channels`` channels (DAC's ``from_latents``
    reads as many stages as the latents hold); BatchError when no k fits."""
    ends = list(accumulate(codebook_dims))
    if channels not in ends:
        shown = ", ".join(map(str, ends[:8])) + (", ..." if len(ends) > 8 else "")
        raise BatchError(
            f"{term}: batch['z_e'] and batch['z_q'] have {channels} channels (dim 1), but codebook_dims "
            f"{list(codebook_dims)} concatenates its first stages to one of {shown} channels; expected one of "
            "those, or codebook_dims = [] for stages stacked as [B, Q, D, T]"
        )
    return list(codebook_dims[: ends.index(channels) + 1])


def stage_losses(term: str, batch: Batch, config: StagesConfig, *, moving: str) -> torch.Tensor:
    """Each stage's MSE(batch[moving], sg(the other input)), as ``[Q]``: the mean over the stage's channels and
    frames for each example, then over the batch. Only ``moving`` ("z_e" or "z_q") receives a gradient."""
    layout = layouts_for(config)["z_e"]
    z_e, z_q = upcast(*check_pair(term, batch, "z_e", "z_q", layout))
    diff = z_e - z_q.detach() if moving == "z_e" else z_q - z_e.detach()
    squared = diff.square()
    if config.stacked:
        return squared.mean(dim=(2, 3)).mean(dim=0)
    widths = _stage_widths(term, squared.shape[1], config.codebook_dims)
    return torch.stack([part.mean(dim=(1, 2)).mean(dim=0) for part in torch.split(squared, widths, dim=1)])


def combine(per_stage: torch.Tensor, config: StagesConfig) -> torch.Tensor:
    """The stages' losses as one number: their sum (DAC) or their mean (audiocraft/EnCodec)."""
    return per_stage.sum() if config.stage_reduction == "sum" else per_stage.mean()


class CommitmentLoss(LossTerm):
    """The commitment loss MSE(z_e, sg(z_q)): pulls the encoder's output toward its codes, which stay fixed."""

    name = "commitment"
    config_class = CommitmentConfig
    requires = ("z_e", "z_q")
    layouts: ClassVar[Mapping[str, str]] = {"z_e": STACKED, "z_q": STACKED}

    @classmethod
    def input_layouts(cls, config: StagesConfig) -> Mapping[str, str]:
        """Stacked ``[B, Q, D, T]``, or ``[B, C, T]`` when ``codebook_dims`` is given."""
        return layouts_for(config)

    def forward(self, batch: Batch) -> torch.Tensor:
        """The unweighted loss: the stages' MSE(z_e, sg(z_q)) summed or averaged."""
        return combine(stage_losses(self.name, batch, self.config, moving="z_e"), self.config)


class CodebookLoss(LossTerm):
    """The codebook loss MSE(z_q, sg(z_e)): moves the codes toward the encoder's output, which stays fixed."""

    name = "codebook"
    config_class = CodebookConfig
    requires = ("z_e", "z_q")
    layouts: ClassVar[Mapping[str, str]] = {"z_e": STACKED, "z_q": STACKED}

    @classmethod
    def input_layouts(cls, config: StagesConfig) -> Mapping[str, str]:
        """Stacked ``[B, Q, D, T]``, or ``[B, C, T]`` when ``codebook_dims`` is given."""
        return layouts_for(config)

    def forward(self, batch: Batch) -> torch.Tensor:
        """The unweighted loss: the stages' MSE(z_q, sg(z_e)) summed or averaged."""
        return combine(stage_losses(self.name, batch, self.config, moving="z_q"), self.config)
