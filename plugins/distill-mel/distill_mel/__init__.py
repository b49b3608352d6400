"""distill plugin: ``mel``, the multi-scale log-mel L1 loss as Descript's DAC trains with it, and
``audiocraft_msspec``, audiocraft's multi-scale mel loss; both with closed-form gradients.

Discovery imports only this module: the terms are registered by name and module, and load (with their
configs) when a config first uses one, or on first access to a name below (PEP 562).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from distill_core import hookimpl
from distill_core.util.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .audiocraft import AudiocraftMel
    from .config import AudiocraftConfig, MelConfig
    from .fast import MultiScaleMel
    from .terms import AudiocraftMsspecLoss, MelLoss

__version__ = "0.1.0"
__all__ = ["AudiocraftConfig", "AudiocraftMel", "AudiocraftMsspecLoss", "MelConfig", "MelLoss", "MultiScaleMel"]

_LAZY = {
    "AudiocraftMel": "audiocraft",
    "MultiScaleMel": "fast",
    "MelConfig": "config",
    "AudiocraftConfig": "config",
    "MelLoss": "terms",
    "AudiocraftMsspecLoss": "terms",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)  # PEP 562


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    """Register both terms by name; each class is imported on first use."""
    register("mel", f"{__name__}.terms:MelLoss")
    register("audiocraft_msspec", f"{__name__}.terms:AudiocraftMsspecLoss")
