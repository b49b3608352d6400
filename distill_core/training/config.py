"""The seed's config classes under the seed's module path (``distill.training.config`` there).

``STFTLossConfig`` and ``KLLossConfig`` are the config classes of the installed ``stft`` and ``kl`` plugins,
looked up in the registry on first access: the core itself knows no particular loss.
"""

from __future__ import annotations

from typing import Any

from ..loss_config import LossConfig
from ..recipe import ReconLossConfig

_PLUGIN_CONFIGS = {"STFTLossConfig": "stft", "KLLossConfig": "kl"}


def __getattr__(name: str) -> Any:
    if name in _PLUGIN_CONFIGS:
        from ..plugins import get_registry

        return get_registry().get(_PLUGIN_CONFIGS[name]).config_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LossConfig", "ReconLossConfig", "STFTLossConfig", "KLLossConfig"]
