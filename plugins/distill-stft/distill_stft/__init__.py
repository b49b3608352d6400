"""distill plugin: the multi-resolution STFT loss term ``stft``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from distill_core import LossTerm, hookimpl
from distill_core.seed.checks import check_spectrograms
from distill_core.terms.base import Batch, BatchError, check_pair, upcast

from .config import STFTConfig, empty_mel_filters
from .fast import COMPONENTS, FastMultiResolutionSTFT

if TYPE_CHECKING:  # imported where it is built: discovery imports nothing heavy
    from auraloss.freq import MultiResolutionSTFTLoss

__version__ = "0.1.0"
__all__ = ["STFTConfig", "STFTLoss", "FastMultiResolutionSTFT", "auraloss_reference", "empty_mel_filters", "COMPONENTS"]


_PerResolution = list[torch.Tensor | float]
AuralossFull = tuple[torch.Tensor, _PerResolution, _PerResolution, _PerResolution, _PerResolution]
"""auraloss's output = 'full': the loss, then per resolution its sc, log, lin and phs terms (0.0 where unweighted)."""


def auraloss_reference(config: STFTConfig) -> MultiResolutionSTFTLoss:
    """auraloss's MultiResolutionSTFTLoss with the same settings: the oracle and the ``auraloss`` backend."""
    import auraloss

    mel = config.scale == "mel"
    return auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=list(config.fft_sizes),
        hop_sizes=list(config.hop_sizes),
        win_lengths=list(config.win_lengths),
        window=config.window,
        w_sc=config.w_sc,
        w_log_mag=config.w_log_mag,
        w_lin_mag=config.w_lin_mag,
        w_phs=config.w_phs,
        sample_rate=config.sample_rate if mel or config.perceptual_weighting else None,
        scale="mel" if mel else None,
        n_bins=config.n_bins if mel else None,
        perceptual_weighting=config.perceptual_weighting,
        scale_invariance=config.scale_invariance,
        mag_distance=config.mag_distance,
        eps=config.eps,
        reduction=config.reduction,
        output=config.output,
    )


class STFTLoss(LossTerm):
    """Multi-resolution STFT loss on the magnitude channel (flattened per example) or on waveforms.

    With ``output = "full"`` the term still returns the 0-dim loss; after each call ``components`` holds
    auraloss's intermediate terms as a detached [4, resolutions] tensor, rows in ``COMPONENTS`` order
    (spectral convergence, log magnitude, linear magnitude, phase), each unweighted, 0 where its weight is 0.
    """

    name = "stft"
    config_class = STFTConfig
    requires = ("recon", "target")
    zero_at_identity = True

    @classmethod
    def input_layouts(cls, config: STFTConfig) -> dict[str, str]:
        """Spectrograms (the magnitude channel is flattened) or waveforms, as ``input`` says."""
        layout = "B, 2, F, T" if config.input == "magnitude" else "B, C, N"
        return {"recon": layout, "target": layout}

    def __init__(self, config: STFTConfig) -> None:
        super().__init__(config)
        self.loss = FastMultiResolutionSTFT(config) if config.backend == "fast" else auraloss_reference(config)
        self.components: torch.Tensor | None = None
        self._largest = max(range(len(config.fft_sizes)), key=lambda i: config.fft_sizes[i])

    def signals(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The [B, C, N] signals the loss compares, after the batch checks."""
        if self.config.input == "magnitude":
            recon, target = check_spectrograms(self.name, batch)
            b = recon.shape[0]
            x, y = recon[:, 0].reshape(b, 1, -1), target[:, 0].reshape(b, 1, -1)
            what = "flattened magnitude channel (F*T samples)"
        else:
            x, y = check_pair(self.name, batch, "recon", "target", "B, C, N")
            what = "waveform"
        i = self._largest
        fft = self.config.fft_sizes[i]
        if x.shape[-1] <= fft // 2:  # torch.stft's centre padding reflects fft // 2 samples at each end
            raise BatchError(
                f"{self.name}: batch['recon'] {what} has {x.shape[-1]} samples, shorter than the "
                f"largest FFT size {fft} allows: expected more than fft_sizes[{i}] // 2 = "
                f"{fft // 2} samples (torch.stft's reflect padding)"
            )
        if self.config.scale_invariance and self.config.backend == "auraloss" and x.shape[0] * x.shape[1] > 1:
            raise BatchError(
                f"{self.name}: scale_invariance with backend = 'auraloss' needs one signal per batch "
                f"(auraloss 0.4 cannot broadcast its per-signal scale), got batch['recon'] "
                f"[{x.shape[0]}, {x.shape[1]}, ...]; use backend = 'fast'"
            )
        if self.config.perceptual_weighting and not isinstance(self.loss, FastMultiResolutionSTFT):  # auraloss
            taps = self.loss.stft_losses[0].prefilter.fir.weight
            if upcast(x)[0].dtype != taps.dtype:
                raise BatchError(
                    f"{self.name}: perceptual_weighting with backend = 'auraloss' filters in the "
                    f"module's dtype {taps.dtype}, got batch['recon'] in {x.dtype}; convert the term "
                    f"(term.to({x.dtype})) or use backend = 'fast'"
                )
        return x, y

    def forward(self, batch: Batch) -> torch.Tensor:
        x, y = upcast(*self.signals(batch))
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        with torch.autocast(x.device.type, enabled=False):  # FFTs, logs and divisions in float32 or wider
            out = self.loss(x, y)
            if self.config.output == "full":
                out = self._keep_components(out)
            return out.clamp(min=0.0)

    def _keep_components(self, out: torch.Tensor | AuralossFull) -> torch.Tensor:
        """Store the [4, resolutions] components (detached) and return the loss itself."""
        if isinstance(out, torch.Tensor):  # the fast backend's loss: its module keeps the components
            self.components = self.loss.components
            return out
        loss, *parts = out  # auraloss: (loss, [sc per resolution], [log ...], [lin ...], [phs ...])
        self.components = torch.stack(
            [
                torch.stack([torch.as_tensor(v, dtype=loss.dtype, device=loss.device).detach() for v in row])
                for row in parts
            ]
        )
        return loss


@hookimpl
def distill_loss_terms(register: Callable[..., None]) -> None:
    register(STFTLoss)
