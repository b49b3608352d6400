"""distill plugin: discriminators (MPD, MSD, MRD, MS-STFTD), adversarial loss forms, the anchors' presets, and
``Adversarial``, which owns and trains a discriminator; the ``adversarial`` loss term.

Discovery imports this module and ``builtin`` (the discriminator hook) only: the term is registered by name and
module, and the architectures load when a config first uses the term, or on first access to a name below
(PEP 562).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from distill_core import hookimpl
from distill_core.util.lazy import lazy_exports

from .builtin import (  # noqa: F401 - the hooks, where the entry point points
    distill_add_hookspecs,
    distill_discriminators,
    distill_plugin_sections,
)

if TYPE_CHECKING:  # pragma: no cover
    from .adversarial import Adversarial, StateMismatch
    from .anchor_formats import export_anchor_checkpoint, load_anchor_checkpoint, save_anchor_checkpoint
    from .base import CommonOptions, Discriminator, SubOutput
    from .config import AdversarialConfig, DiscriminatorSpec, FeatureMatchingConfig, OptimizerConfig, SchedulerConfig
    from .hookspecs import discriminators
    from .losses import FORMS, discriminator_loss, feature_matching, generator_loss
    from .mpd import MPD, MPDConfig
    from .mrd import MRD, MRDConfig
    from .msd import MSD, MSDConfig
    from .msstftd import MSSTFTD, MSSTFTDConfig
    from .presets import PRESETS
    from .term import AdversarialLoss

__version__ = "0.1.0"
_LAZY = {
    "Adversarial": "adversarial",
    "StateMismatch": "adversarial",
    "export_anchor_checkpoint": "anchor_formats",
    "load_anchor_checkpoint": "anchor_formats",
    "save_anchor_checkpoint": "anchor_formats",
    "CommonOptions": "base",
    "Discriminator": "base",
    "SubOutput": "base",
    "AdversarialConfig": "config",
    "DiscriminatorSpec": "config",
    "FeatureMatchingConfig": "config",
    "OptimizerConfig": "config",
    "SchedulerConfig": "config",
    "discriminators": "hookspecs",
    "FORMS": "losses",
    "discriminator_loss": "losses",
    "feature_matching": "losses",
    "generator_loss": "losses",
    "MPD": "mpd",
    "MPDConfig": "mpd",
    "MRD": "mrd",
    "MRDConfig": "mrd",
    "MSD": "msd",
    "MSDConfig": "msd",
    "MSSTFTD": "msstftd",
    "MSSTFTDConfig": "msstftd",
    "PRESETS": "presets",
    "AdversarialLoss": "term",
}
__all__ = [
    "Adversarial",
    "AdversarialConfig",
    "AdversarialLoss",
    "CommonOptions",
    "Discriminator",
    "DiscriminatorSpec",
    "FORMS",
    "FeatureMatchingConfig",
    "MPD",
    "MPDConfig",
    "MRD",
    "MRDConfig",
    "MSD",
    "MSDConfig",
    "MSSTFTD",
    "MSSTFTDConfig",
    "OptimizerConfig",
    "PRESETS",
    "SchedulerConfig",
    "StateMismatch",
    "SubOutput",
    "discriminator_loss",
    "discriminators",
    "export_anchor_checkpoint",
    "feature_matching",
    "generator_loss",
    "load_anchor_checkpoint",
    "save_anchor_checkpoint",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)  # PEP 562


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    """Register the ``adversarial`` term by name; its class (and the architectures) load on first use."""
    register("adversarial", f"{__name__}.term:AdversarialLoss")
