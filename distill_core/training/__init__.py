"""Training with a combined loss: configs, metrics, epochs and the demo run (the seed's ``distill.training``)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "LossConfig": ".config",
    "ReconLossConfig": ".config",
    "STFTLossConfig": ".config",
    "KLLossConfig": ".config",
    "train": ".loop",
    "train_epoch": ".loop",
    "validate_epoch": ".loop",
    "StepMetrics": ".metrics",
    "EpochMetrics": ".metrics",
    "MetricsHistory": ".metrics",
    "DemoSettings": ".run",
    "run_demo": ".run",
    "SpectrogramConfig": ".spectrogram",
    "to_spectrogram": ".spectrogram",
    "from_spectrogram": ".spectrogram",
    "SpectrogramVAE": ".model",
    "Vocoder": ".vocoder",
    "VocoderConfig": ".vocoder",
    "vocoder_batch": ".vocoder",
    "WavSegments": ".segments",
    "VocoderAdapter": ".vocoder",
    "VocoderTraining": ".vocoder_run",
    "run_vocoder": ".vocoder_run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # PEP 562: the seed's names load on first access (the loop pulls in much of torch)
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
