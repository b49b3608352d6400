"""distill: a plugin-based loss framework for PyTorch. Loss terms come from pip-installed plugins."""

from .combined import CombinedLoss, TermBuildError
from .config import ConfigError, InvalidConfig, converter
from .hookspecs import hookimpl
from .loss_config import LossConfig, dump_config, load_config
from .plugins import (BrokenPlugin, PluginError, Provenance, Registry, TermInfo, UnknownTermError, get_registry,
                      register, reset_registry)
from .recipe import GroupConfig, ReconLossConfig
from .schedules import Constant, Cosine, Cyclical, LinearWarmup, Schedule, Weight, weight_at
from .terms import BatchError, LossTerm

__version__ = "0.1.0"

__all__ = [
    "BatchError", "BrokenPlugin", "CombinedLoss", "ConfigError", "Constant", "Cosine", "Cyclical", "GroupConfig",
    "InvalidConfig", "LinearWarmup", "LossConfig", "LossTerm", "PluginError", "Provenance", "ReconLossConfig",
    "Registry", "Schedule", "TermBuildError", "TermInfo", "UnknownTermError", "Weight", "converter", "dump_config",
    "get_registry", "hookimpl", "load_config", "register", "reset_registry", "weight_at",
]
