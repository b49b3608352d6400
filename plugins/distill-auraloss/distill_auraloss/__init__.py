"""distill plugin: every auraloss 0.4 loss as a term named ``auraloss_<short class name>``.

Each term builds its auraloss module once, checks the batch (``recon`` and ``target``, [B, C, N]
waveforms), and returns exactly what auraloss returns, computed in float32 or wider.

Discovery imports only this module: the terms are registered by name and module, and their classes (with
auraloss and the configs) load when a config first uses one, or on first access to a name below (PEP 562).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distill_core import hookimpl
from distill_core.util.lazy import lazy_exports

__version__ = "0.1.0"

# term name -> the class's module and name, in the order `distill-loss plugins` lists them
TERM_CLASSES = {
    "auraloss_esr": "time_terms:ESRLossTerm",
    "auraloss_dc": "time_terms:DCLossTerm",
    "auraloss_logcosh": "time_terms:LogCoshLossTerm",
    "auraloss_snr": "time_terms:SNRLossTerm",
    "auraloss_sisdr": "time_terms:SISDRLossTerm",
    "auraloss_sdsdr": "time_terms:SDSDRLossTerm",
    "auraloss_stft": "freq_terms:STFTLossTerm",
    "auraloss_melstft": "freq_terms:MelSTFTLossTerm",
    "auraloss_chromastft": "freq_terms:ChromaSTFTLossTerm",
    "auraloss_mrstft": "freq_terms:MultiResolutionSTFTLossTerm",
    "auraloss_rrstft": "freq_terms:RandomResolutionSTFTLossTerm",
    "auraloss_sdstft": "freq_terms:SumAndDifferenceSTFTLossTerm",
}
_CONFIGS = (
    "ESRLossConfig",
    "DCLossConfig",
    "LogCoshLossConfig",
    "SNRLossConfig",
    "SISDRLossConfig",
    "SDSDRLossConfig",
    "STFTLossConfig",
    "MelSTFTLossConfig",
    "ChromaSTFTLossConfig",
    "MultiResolutionSTFTLossConfig",
    "RandomResolutionSTFTLossConfig",
    "SumAndDifferenceSTFTLossConfig",
)
_LAZY = {
    **{target.split(":")[1]: target.split(":")[0] for target in TERM_CLASSES.values()},
    **{name: "configs" for name in _CONFIGS},
    "AuralossTerm": "term",
    "MissingDependency": "needs",
}

__all__ = ["TERMS", "TERM_CLASSES", *_LAZY]


_lazy_getattr, __dir__ = lazy_exports(__name__, _LAZY)  # PEP 562: discovery need not import auraloss


def __getattr__(name: str) -> Any:
    if name == "TERMS":  # every term class, in TERM_CLASSES's order
        return tuple(_lazy_getattr(target.split(":")[1]) for target in TERM_CLASSES.values())
    return _lazy_getattr(name)


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    """Register every auraloss term with distill, by name; each class is imported on first use."""
    for name, target in TERM_CLASSES.items():
        register(name, f"{__name__}.{target}")
