"""distill: a plugin-based loss framework for PyTorch. Loss terms come from pip-installed plugins.

Names load on first access (PEP 562), so ``import distill_core`` and plugin discovery stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hookspecs import hookimpl
from .lazy import lazy_exports
from .schedules import Constant, Cosine, Cyclical, LinearWarmup, Schedule, Weight, weight_at
from .terms import BatchError, LossTerm

__version__ = "0.1.0"

_LAZY = {
    "CombinedLoss": "combined", "TermBuildError": "combined",
    "ConfigError": "config", "InvalidConfig": "config", "converter": "config",
    "LossConfig": "loss_config", "dump_config": "loss_config", "dumps_config": "loss_config",
    "load_config": "loss_config",
    "BrokenPlugin": "plugins", "PluginError": "plugins", "Provenance": "plugins", "Registry": "plugins",
    "TermInfo": "plugins", "UnknownTermError": "plugins", "get_registry": "plugins", "register": "plugins",
    "reset_registry": "plugins",
    "GroupConfig": "groups", "Recipe": "recipes",
    "BalancerConfig": "balancer", "GradientBalancer": "balancer", "TermBinding": "loss_config",
}

if TYPE_CHECKING:  # pragma: no cover
    from .combined import CombinedLoss, TermBuildError
    from .config import ConfigError, InvalidConfig, converter
    from .loss_config import LossConfig, dump_config, dumps_config, load_config
    from .plugins import (BrokenPlugin, PluginError, Provenance, Registry, TermInfo, UnknownTermError,
                          get_registry, register, reset_registry)
    from .groups import GroupConfig
    from .recipes import Recipe
    from .balancer import BalancerConfig, GradientBalancer
    from .loss_config import TermBinding


# PEP 562: the public names load on first use, so `import distill_core` stays cheap
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "BalancerConfig", "GradientBalancer", "TermBinding",
    "BatchError", "BrokenPlugin", "CombinedLoss", "ConfigError", "Constant", "Cosine", "Cyclical", "GroupConfig",
    "InvalidConfig", "LinearWarmup", "LossConfig", "LossTerm", "PluginError", "Provenance", "Recipe",
    "Registry", "Schedule", "TermBuildError", "TermInfo", "UnknownTermError", "Weight", "converter", "dump_config", "dumps_config",
    "get_registry", "hookimpl", "load_config", "register", "reset_registry", "weight_at",
]
