"""distill plugin: whole published losses as recipes (``recipe = "dac"``, ``"hifigan_v1"``, ``"bigvgan_v2"``,
``"encodec"``, ``"vocos"``; entry-point group ``distill.recipes``), and the two mel terms only these recipes need
(``hifigan_mel``, ``vocos_mel``).

Discovery imports only this module (for the terms' hook) and, when a recipe is first looked up, the recipe
modules, which are data: the terms load when a config first uses one, or on first access to a name below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from distill_core import hookimpl
from distill_core.util.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .mels import HifiganMelConfig, HifiganMelLoss, VocosMelConfig, VocosMelLoss

__version__ = "0.1.0"
__all__ = ["HifiganMelConfig", "HifiganMelLoss", "VocosMelConfig", "VocosMelLoss"]
_LAZY = {name: "mels" for name in __all__}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)  # PEP 562


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    """Register both mel terms by name; each class is imported on first use."""
    register("hifigan_mel", f"{__name__}.mels:HifiganMelLoss")
    register("vocos_mel", f"{__name__}.mels:VocosMelLoss")
