"""The multi-scale mel loss with an analytic backward: DAC's numerics, a fraction of autograd's time and memory.

Per scale s (window w, hop w // 4, periodic Hann window, centred frames with reflect padding, as DAC's
audiotools STFT), with M = fb |STFT(x)| the mel magnitudes, Y the target's, c = clamp(., eps) and p = pow:

    L_s = log_weight * mean|p log10 c(M) - p log10 c(Y)| + mag_weight * mean|M - Y|,   L = sum over scales

When a gradient is needed the forward pass also computes it in closed form,

    dL/dM = log_weight sign(.) p / (ln 10 c(M) n) [M >= eps] + mag_weight sign(M - Y) / n
    dL/dX = (fb^T dL/dM) X / |X|                          (0 where |X| = 0, as torch.abs's gradient)
    dL/dframes = window * irfft(dL/dX)                     (the adjoint of the real FFT)
    dL/dx = overlap-add of the frames, then the adjoint of the reflect padding

and keeps only that signal-sized gradient for backward. The target's STFT runs without autograd; no
phase, no complex abs, no boolean masks; each signal is reflect-padded once for all scales; spectra stay
frames-first ([R, T, F], torch.stft's memory order); the filterbank and its adjoint multiply only their
non-zero bands (banded.py); the window is applied inside the overlap-add, which every scale adds into one
padded gradient.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from distill_core.dsp.frames import overlap_add_into, reflect_pad_adjoint
from distill_core.dsp.mel import mel_filterbank

from .banded import BandedMatmul
from .config import MelConfig

LN10 = math.log(10.0)


def below(value: float, dtype: torch.dtype) -> float:
    """The largest number of ``dtype`` under ``value``: ``m > below(eps)`` is ``m >= eps`` in that dtype."""
    v = torch.tensor(value, dtype=dtype)
    return float(torch.nextafter(v, torch.zeros_like(v)))


class MelScale(nn.Module):
    """One scale: window length, hop, periodic Hann window, and the filterbank as banded products."""

    window: torch.Tensor
    backward_window: torch.Tensor
    fb: torch.Tensor

    def __init__(
        self,
        window_length: int,
        n_mels: int,
        fmin: float,
        fmax: float,
        sample_rate: float,
        *,
        htk: bool = False,
        norm: str | None = "slaney",
        window: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.window_length, self.hop, self.pad = window_length, window_length // 4, window_length // 2
        if window is None:  # DAC's: scipy's periodic Hann window (float64) cast to float32
            window = torch.hann_window(window_length, periodic=True, dtype=torch.float64).float()
        self.register_buffer("window", window, persistent=False)
        # irfft returns frames / (w / 2) once DC (and Nyquist, for even w) are doubled: fold w / 2 in here.
        self.register_buffer("backward_window", window * (window_length / 2), persistent=False)
        fb = torch.from_numpy(
            mel_filterbank(sample_rate, window_length, n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
        )
        self.register_buffer("fb", fb, persistent=False)
        self.to_mel = BandedMatmul(fb.T)  # [..., F] -> [..., n_mels]
        # The adjoint, with the DC (and, for even w, Nyquist) columns doubled: irfft halves every bin but
        # those two, so doubling them makes window * irfft * (w / 2) the exact adjoint of the windowed rfft.
        edges = torch.ones(fb.shape[1])
        edges[0] = 2.0
        if window_length % 2 == 0:
            edges[-1] = 2.0
        self.from_mel = BandedMatmul(fb * edges)  # [..., n_mels] -> [..., F]

    def spectrum(self, padded: torch.Tensor) -> torch.Tensor:
        """[R, T, w // 2 + 1] complex STFT of [R, N + 2 pad] reflect-padded signals, frames first."""
        return torch.stft(
            padded, self.window_length, self.hop, window=self.window.to(padded.dtype), center=False, return_complex=True
        ).transpose(1, 2)

    def magnitude(self, spec: torch.Tensor) -> torch.Tensor:
        """|X| as sqrt(re^2 + im^2), one new tensor and no complex abs."""
        return self.power(spec).sqrt_()

    def power(self, spec: torch.Tensor) -> torch.Tensor:
        """|X|^2 as re^2 + im^2."""
        parts = torch.view_as_real(spec)
        re, im = parts[..., 0], parts[..., 1]
        return (re * re).addcmul_(im, im)

    def adjoint_into(self, grad_padded: torch.Tensor, grad_spec: torch.Tensor) -> None:
        """Add dL/d(padded signal) [R, N + 2 pad] from dL/dX [R, T, F] (DC and Nyquist already doubled)."""
        overlap_add_into(grad_padded, torch.fft.irfft(grad_spec, n=self.window_length), self.backward_window, self.hop)


class ClosedFormLoss(nn.Module):
    """A loss of [..., N] signals, the target a constant, whose gradient in x is computed with its value."""

    def loss_and_grad(
        self, x: torch.Tensor, y: torch.Tensor, want_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss of [R, N] signals and, when asked, its gradient w.r.t. x."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of [..., N] signals; the target is a constant."""
        y2 = y.detach().reshape(-1, y.shape[-1])
        if x.requires_grad and torch.is_grad_enabled():
            return _AnalyticLoss.apply(x, y2, self)
        with torch.no_grad():
            return self.loss_and_grad(x.reshape(-1, x.shape[-1]), y2, want_grad=False)[0]


class MultiScaleMel(ClosedFormLoss):
    """DAC's MelSpectrogramLoss(x, y) for [R, N] signals: the sum over scales of log-mel (and mel) L1."""

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        scales = [
            MelScale(w, m, lo, hi, config.sample_rate)
            for w, m, lo, hi in zip(config.window_lengths, config.n_mels, config.fmins, config.fmaxs)
        ]
        self.scales = nn.ModuleList(scales)
        self.pad = max(scale.pad for scale in scales)
        # The clamp's threshold per dtype, found once here rather than on every step.
        self.below_eps = {dtype: below(config.clamp_eps, dtype) for dtype in (torch.float32, torch.float64)}

    def _log_distance(
        self, mel_x: torch.Tensor, target_mel: torch.Tensor, want_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(sum |log10 c(M) - log10 c(Y)|, its derivative in M, 0 where the clamp holds M); Y is overwritten."""
        eps = self.config.clamp_eps
        log_diff = mel_x.clamp(min=eps).log10_().sub_(target_mel.clamp_(min=eps).log10_())
        distance = log_diff.abs().sum()
        if not want_grad:
            return distance, None
        # 1 / M where M >= eps, else 1 / inf = 0: the clamp's derivative without a boolean mask.
        threshold = self.below_eps.get(mel_x.dtype)
        kept = F.threshold(mel_x, below(eps, mel_x.dtype) if threshold is None else threshold, math.inf)
        return distance, log_diff.sign_().div_(kept)

    def _scale(
        self, scale: MelScale, x: torch.Tensor, y: torch.Tensor, grad_padded: torch.Tensor | None
    ) -> torch.Tensor:
        """The loss of one scale from its padded signals, adding its gradient to ``grad_padded`` when given."""
        cfg = self.config
        want_grad = grad_padded is not None
        target_mel = scale.to_mel(scale.magnitude(scale.spectrum(y)))
        spec = scale.spectrum(x)
        mag = scale.magnitude(spec)
        mel_x = scale.to_mel(mag)
        n = mel_x.numel()
        loss = mel_x.new_zeros(())
        grad_log = grad_mag = None
        if cfg.mag_weight:
            diff = mel_x - target_mel
            loss = loss + (cfg.mag_weight / n) * diff.abs().sum()
            if want_grad:
                grad_mag = diff.sign_()
        if cfg.log_weight:
            # |log10 c(M)^p - log10 c(Y)^p| = p |log10 c(M) - log10 c(Y)| for p > 0: the power is one factor.
            distance, grad_log = self._log_distance(mel_x, target_mel, want_grad)
            loss = loss + (cfg.log_weight * cfg.pow / n) * distance
        if grad_padded is None:  # not want_grad
            return loss
        # dL/dM = k_log grad_log + k_mag grad_mag; the last factor rides on the (small) filterbank blocks.
        k_log, k_mag = cfg.log_weight * cfg.pow / (LN10 * n), cfg.mag_weight / n
        if grad_log is not None and grad_mag is not None:
            grad_mel, factor = grad_log.mul_(k_log / k_mag).add_(grad_mag), k_mag
        elif grad_log is not None:
            grad_mel, factor = grad_log, k_log
        elif grad_mag is not None:
            grad_mel, factor = grad_mag, k_mag
        else:
            return loss
        # dL/dX = dL/d|X| X / |X|, and 0 where |X| = 0 (torch.abs's gradient): 0 / 0 and g / 0 become 0.
        grad_abs = scale.from_mel(grad_mel, factor).div_(mag).nan_to_num_(0.0, 0.0, 0.0)
        scale.adjoint_into(grad_padded, spec.mul_(grad_abs))
        return loss

    def loss_and_grad(
        self, x: torch.Tensor, y: torch.Tensor, want_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The summed loss of [R, N] signals and, when asked, its gradient w.r.t. x.

        Both signals are reflect-padded once, for the longest window; a shorter window's padding is a slice
        of that one, so each scale reads a view, and every scale's gradient lands in one padded buffer whose
        padding is folded back once.
        """
        pad, length = self.pad, x.shape[-1]
        x_padded, y_padded = (F.pad(s.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1) for s in (x, y))
        grad_padded = torch.zeros_like(x_padded) if want_grad else None
        total = x.new_zeros(())
        for scale in self.scales:
            assert isinstance(scale, MelScale)  # the ModuleList holds only MelScale (__init__)
            span = slice(pad - scale.pad, pad + length + scale.pad)
            total = total + self._scale(
                scale, x_padded[:, span], y_padded[:, span], grad_padded[:, span] if grad_padded is not None else None
            )
        return total, reflect_pad_adjoint(grad_padded, pad, length) if grad_padded is not None else None


class _SavedGradient(Protocol):
    """What _AnalyticLoss uses of autograd's ctx (torch's FunctionCtx declares no ``saved_tensors``)."""

    saved_tensors: tuple[torch.Tensor, ...]

    def save_for_backward(self, *tensors: torch.Tensor) -> None: ...


class _AnalyticLoss(torch.autograd.Function):
    """Loss in forward, gradient computed alongside it; backward only scales the saved gradient."""

    @staticmethod
    def forward(ctx: _SavedGradient, x: torch.Tensor, y: torch.Tensor, module: ClosedFormLoss) -> torch.Tensor:
        loss, grad = module.loss_and_grad(x.reshape(-1, x.shape[-1]), y, want_grad=True)
        assert grad is not None  # want_grad=True: loss_and_grad returns the gradient
        ctx.save_for_backward(grad.view(x.shape))
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: _SavedGradient, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None
