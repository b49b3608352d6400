"""distill plugin: every auraloss 0.4 loss as a term named ``auraloss_<short class name>``.

Each term builds its auraloss module once, checks the batch (``recon`` and ``target``, [B, C, N]
waveforms), and returns exactly what auraloss returns, computed in float32 or wider.
"""

from __future__ import annotations

from typing import Callable

from distill_core import hookimpl

from .configs import (ChromaSTFTLossConfig, DCLossConfig, ESRLossConfig, LogCoshLossConfig, MelSTFTLossConfig,
                      MultiResolutionSTFTLossConfig, RandomResolutionSTFTLossConfig, SDSDRLossConfig,
                      SISDRLossConfig, SNRLossConfig, STFTLossConfig, SumAndDifferenceSTFTLossConfig)
from .freq_terms import (FREQ_TERMS, ChromaSTFTLossTerm, MelSTFTLossTerm, MultiResolutionSTFTLossTerm,
                         RandomResolutionSTFTLossTerm, STFTLossTerm, SumAndDifferenceSTFTLossTerm)
from .needs import MissingDependency
from .term import AuralossTerm
from .time_terms import (TIME_TERMS, DCLossTerm, ESRLossTerm, LogCoshLossTerm, SDSDRLossTerm, SISDRLossTerm,
                         SNRLossTerm)

__version__ = "0.1.0"

TERMS = TIME_TERMS + FREQ_TERMS

__all__ = [
    "TERMS", "AuralossTerm", "MissingDependency",
    "ESRLossTerm", "DCLossTerm", "LogCoshLossTerm", "SNRLossTerm", "SISDRLossTerm", "SDSDRLossTerm",
    "STFTLossTerm", "MelSTFTLossTerm", "ChromaSTFTLossTerm", "MultiResolutionSTFTLossTerm",
    "RandomResolutionSTFTLossTerm", "SumAndDifferenceSTFTLossTerm",
    "ESRLossConfig", "DCLossConfig", "LogCoshLossConfig", "SNRLossConfig", "SISDRLossConfig", "SDSDRLossConfig",
    "STFTLossConfig", "MelSTFTLossConfig", "ChromaSTFTLossConfig", "MultiResolutionSTFTLossConfig",
    "RandomResolutionSTFTLossConfig", "SumAndDifferenceSTFTLossConfig",
]


@hookimpl
def distill_loss_terms(register: Callable[[type[AuralossTerm]], None]) -> None:
    """Register every auraloss term with distill."""
    for term in TERMS:
        register(term)
