"""distill plugin: discriminators (MPD, MSD, MRD, MS-STFTD), adversarial loss forms, the anchors' presets, and
``Adversarial``, which owns and trains a discriminator; the ``adversarial`` loss term."""

from __future__ import annotations

from distill_core import hookimpl

from .adversarial import Adversarial, StateMismatch
from .base import CommonOptions, Discriminator, SubOutput
from .builtin import distill_discriminators  # noqa: F401 - the hook, found where the entry point points
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
__all__ = ["FORMS", "MPD", "MRD", "MSD", "MSSTFTD", "PRESETS", "Adversarial", "AdversarialConfig", "AdversarialLoss",
           "CommonOptions", "Discriminator", "DiscriminatorSpec", "FeatureMatchingConfig", "MPDConfig", "MRDConfig",
           "MSDConfig", "MSSTFTDConfig", "OptimizerConfig", "SchedulerConfig", "StateMismatch", "SubOutput",
           "discriminator_loss", "discriminators", "feature_matching", "generator_loss"]


@hookimpl
def distill_loss_terms(register) -> None:
    register(AdversarialLoss)
