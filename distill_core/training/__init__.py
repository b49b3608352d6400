"""Training with a combined loss: configs, metrics, epochs and the demo run.

``STFTLossConfig`` and ``KLLossConfig`` are the config classes of the installed ``stft`` and ``kl`` plugins,
looked up in the registry on first access (the core itself knows no particular loss).
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
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_LAZY: dict[str, str] = {
    "train": ".loop", "train_epoch": ".loop", "validate_epoch": ".loop",
    "StepMetrics": ".metrics", "EpochMetrics": ".metrics", "MetricsHistory": ".metrics",
    "DemoSettings": ".run", "run_demo": ".run",
    "SpectrogramConfig": ".spectrogram", "to_spectrogram": ".spectrogram", "from_spectrogram": ".spectrogram",
    "SpectrogramVAE": ".model",
}

__all__ = ["LossConfig", "ReconLossConfig", "STFTLossConfig", "KLLossConfig", *_LAZY]
