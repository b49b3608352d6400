"""distill plugin: ``stoi`` and ``estoi``, speech intelligibility as a loss (1 - score), differentiable.

Discovery imports only this module: the terms are registered by name and module, and load when a config first
uses one, or on first access to a name below (PEP 562).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from distill_core import hookimpl
from distill_core.util.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .config import ESTOIConfig, STOIConfig
    from .intelligibility import intelligibility
    from .resample import OctaveResample
    from .terms import ESTOILoss, STOILoss

__version__ = "0.1.0"
__all__ = ["ESTOIConfig", "ESTOILoss", "OctaveResample", "STOIConfig", "STOILoss", "intelligibility"]
_LAZY = {
    "ESTOIConfig": "config",
    "STOIConfig": "config",
    "ESTOILoss": "terms",
    "STOILoss": "terms",
    "OctaveResample": "resample",
    "intelligibility": "intelligibility",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)  # PEP 562


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    """Register both terms by name; each class is imported on first use."""
    register("stoi", f"{__name__}.terms:STOILoss")
    register("estoi", f"{__name__}.terms:ESTOILoss")
