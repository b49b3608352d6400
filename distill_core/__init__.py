"""distill: a plugin-based loss framework for PyTorch. Loss terms come from pip-installed plugins.

Names load on first access (PEP 562), so ``import distill_core`` and plugin discovery stay cheap: importing the
package imports neither torch nor any term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill_core._moved import install_moved_modules
from distill_core.config.schedules import Constant, Cosine, Cyclical, LinearWarmup, Schedule, Weight, weight_at
from distill_core.registry.hookspecs import hookimpl
from distill_core.util.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "BatchError": "terms.base",
    "LossTerm": "terms.base",
    "CombinedLoss": "loss.combined",
    "TermBuildError": "loss.combined",
    "ConfigError": "config.converter",
    "InvalidConfig": "config.converter",
    "converter": "config.converter",
    "REQUIRED_IN_FILES": "config.converter",
    "PATH_RELATIVE_TO_FILE": "config.converter",
    "LossConfig": "loss.config",
    "dump_config": "loss.config",
    "dumps_config": "loss.config",
    "load_config": "loss.config",
    "TermBinding": "loss.config",
    "BrokenPlugin": "registry.discovery",
    "PluginError": "registry.discovery",
    "Provenance": "registry.discovery",
    "Registry": "registry.discovery",
    "TermInfo": "registry.discovery",
    "UnknownTermError": "registry.discovery",
    "get_registry": "registry.discovery",
    "register": "registry.discovery",
    "reset_registry": "registry.discovery",
    "GroupConfig": "config.groups",
    "Recipe": "registry.recipes",
    "BalancerConfig": "loss.balancer",
    "GradientBalancer": "loss.balancer",
}

if TYPE_CHECKING:  # pragma: no cover
    from distill_core.config.converter import (
        PATH_RELATIVE_TO_FILE,
        REQUIRED_IN_FILES,
        ConfigError,
        InvalidConfig,
        converter,
    )
    from distill_core.config.groups import GroupConfig
    from distill_core.loss.balancer import BalancerConfig, GradientBalancer
    from distill_core.loss.combined import CombinedLoss, TermBuildError
    from distill_core.loss.config import LossConfig, TermBinding, dump_config, dumps_config, load_config
    from distill_core.registry.discovery import (
        BrokenPlugin,
        PluginError,
        Provenance,
        Registry,
        TermInfo,
        UnknownTermError,
        get_registry,
        register,
        reset_registry,
    )
    from distill_core.registry.recipes import Recipe
    from distill_core.terms.base import BatchError, LossTerm


# PEP 562: the public names load on first use, so `import distill_core` stays cheap
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

install_moved_modules()


__all__ = [
    "BalancerConfig",
    "GradientBalancer",
    "TermBinding",
    "BatchError",
    "BrokenPlugin",
    "CombinedLoss",
    "ConfigError",
    "Constant",
    "Cosine",
    "Cyclical",
    "GroupConfig",
    "InvalidConfig",
    "LinearWarmup",
    "LossConfig",
    "LossTerm",
    "PATH_RELATIVE_TO_FILE",
    "PluginError",
    "REQUIRED_IN_FILES",
    "Provenance",
    "Recipe",
    "Registry",
    "Schedule",
    "TermBuildError",
    "TermInfo",
    "UnknownTermError",
    "Weight",
    "converter",
    "dump_config",
    "dumps_config",
    "get_registry",
    "hookimpl",
    "load_config",
    "register",
    "reset_registry",
    "weight_at",
]
