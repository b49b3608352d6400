"""The time-domain auraloss losses as terms: ESR, DC, log-cosh, SNR, SI-SDR, SD-SDR."""

from __future__ import annotations

import auraloss

from .configs import DCLossConfig, ESRLossConfig, LogCoshLossConfig, SDSDRLossConfig, SISDRLossConfig, SNRLossConfig
from .term import AuralossTerm, PerChannelTerm


class ESRLossTerm(AuralossTerm):
    """Error-to-signal ratio (Wright & Valimaki 2019): energy of the error over the target's."""

    name = "auraloss_esr"
    config_class = ESRLossConfig
    wraps = auraloss.time.ESRLoss
    zero_at_identity = True


class DCLossTerm(AuralossTerm):
    """DC error (Wright & Valimaki 2019): squared mean error over the target's mean power."""

    name = "auraloss_dc"
    config_class = DCLossConfig
    wraps = auraloss.time.DCLoss
    zero_at_identity = True


class LogCoshLossTerm(AuralossTerm):
    """Log-cosh of the error (Chen et al. 2019): L2 near zero, L1 far from it; log(1 + eps)/a at identity."""

    name = "auraloss_logcosh"
    config_class = LogCoshLossConfig
    wraps = auraloss.time.LogCoshLoss


class SNRLossTerm(PerChannelTerm):
    """Negative SNR in dB (not Vincent et al.'s filtered SDR); very negative near identity."""

    name = "auraloss_snr"
    config_class = SNRLossConfig
    wraps = auraloss.time.SNRLoss


class SISDRLossTerm(PerChannelTerm):
    """Negative scale-invariant SDR in dB (Le Roux et al. 2018)."""

    name = "auraloss_sisdr"
    config_class = SISDRLossConfig
    wraps = auraloss.time.SISDRLoss


class SDSDRLossTerm(PerChannelTerm):
    """Negative scale-dependent SDR in dB (Le Roux et al. 2018)."""

    name = "auraloss_sdsdr"
    config_class = SDSDRLossConfig
    wraps = auraloss.time.SDSDRLoss


TIME_TERMS = (ESRLossTerm, DCLossTerm, LogCoshLossTerm, SNRLossTerm, SISDRLossTerm, SDSDRLossTerm)
