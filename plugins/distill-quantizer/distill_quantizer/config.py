"""The quantizer terms' configs: how the residual stages sit in the batch and how their losses combine."""

from __future__ import annotations

from typing import Literal

import attrs

from distill_core import InvalidConfig, Weight

StageReduction = Literal["sum", "mean"]
"""How the per-stage losses combine: ``sum`` as DAC's ResidualVectorQuantize, ``mean`` as audiocraft's
ResidualVectorQuantizer (EnCodec)."""

STAGE_REDUCTIONS: tuple[str, ...] = ("sum", "mean")
MAX_CODEBOOK_DIM = 2**16
"""Largest stage width accepted in ``codebook_dims``: a bigger one is a typo, not a codebook."""
MAX_STAGES = 4096
"""Most residual stages ``codebook_dims`` may list (DAC's largest published setup has 32)."""

_DIMS = {"schema": {"items": {"type": "integer", "minimum": 1, "maximum": MAX_CODEBOOK_DIM}}}


def stage_problems(stage_reduction: object, codebook_dims: object) -> list[tuple[str, str]]:
    """Every problem with the two stage options, each under the config key that holds it."""
    problems: list[tuple[str, str]] = []
    if not (isinstance(stage_reduction, str) and stage_reduction in STAGE_REDUCTIONS):
        problems.append(
            ("stage_reduction", f"expected one of {', '.join(map(repr, STAGE_REDUCTIONS))}, got {stage_reduction!r}")
        )
    if not isinstance(codebook_dims, tuple):
        problems.append(("codebook_dims", f"expected a list of stage widths, got {type(codebook_dims).__name__}"))
        return problems
    if len(codebook_dims) > MAX_STAGES:
        problems.append(("codebook_dims", f"expected at most {MAX_STAGES} stages, got {len(codebook_dims)}"))
        return problems
    for i, dim in enumerate(codebook_dims):
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_CODEBOOK_DIM:
            problems.append(
                (
                    f"codebook_dims[{i}]",
                    f"expected a whole number of channels from 1 to {MAX_CODEBOOK_DIM}, got {dim!r}",
                )
            )
    return problems


def _as_tuple(value: object) -> object:
    """A list of widths as a tuple (Python callers write lists too); anything else is left for the checks."""
    return tuple(value) if isinstance(value, list) else value


@attrs.define
class StagesConfig:
    """The options both quantizer terms share: the layout of ``z_e``/``z_q`` and the reduction over stages.

    ``codebook_dims`` empty (the default): both inputs are the stages stacked, ``[B, Q, D, T]``. Given (one
    width per stage, as DAC's ``codebook_dim`` list): both are the stages concatenated along channels,
    ``[B, C, T]`` with C the sum of the first k widths, as DAC's ``latents`` output and ``from_latents`` lay
    them out. ``stage_reduction``: ``sum`` (DAC) or ``mean`` (audiocraft/EnCodec) of the per-stage losses.
    """

    weight: Weight = 1.0
    stage_reduction: StageReduction = "sum"
    codebook_dims: tuple[int, ...] = attrs.field(default=(), converter=_as_tuple, metadata=_DIMS)

    def __attrs_post_init__(self) -> None:
        problems = stage_problems(self.stage_reduction, self.codebook_dims)
        if problems:
            raise InvalidConfig(problems)

    @property
    def stacked(self) -> bool:
        """Whether the inputs hold the stages on their own axis (``[B, Q, D, T]``) rather than concatenated."""
        return not self.codebook_dims


@attrs.define
class CommitmentConfig(StagesConfig):
    """``commitment``: MSE(z_e, sg(z_q)) per stage; ``sum`` over stages is DAC's, ``mean`` EnCodec's."""


@attrs.define
class CodebookConfig(StagesConfig):
    """``codebook``: MSE(z_q, sg(z_e)) per stage, DAC's codebook loss (``sum`` over stages, as DAC)."""
