"""distill plugin: ``commitment`` and ``codebook``, the vector quantizer's losses of DAC (and EnCodec's commitment).

Discovery imports only this module: the terms are registered by name and module, and load when a config first
uses one, or on first access to a name below (PEP 562).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from distill_core import hookimpl
from distill_core.util.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .config import CodebookConfig, CommitmentConfig, StagesConfig
    from .terms import CodebookLoss, CommitmentLoss, stage_losses

__version__ = "0.1.0"
__all__ = ["CodebookConfig", "CodebookLoss", "CommitmentConfig", "CommitmentLoss", "StagesConfig", "stage_losses"]
_LAZY = {
    "CodebookConfig": "config",
    "CommitmentConfig": "config",
    "StagesConfig": "config",
    "CodebookLoss": "terms",
    "CommitmentLoss": "terms",
    "stage_losses": "terms",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)  # PEP 562


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    """Register both terms by name; each class is imported on first use."""
    register("commitment", f"{__name__}.terms:CommitmentLoss")
    register("codebook", f"{__name__}.terms:CodebookLoss")
