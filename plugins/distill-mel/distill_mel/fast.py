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
phase, no complex abs; spectra stay frames-first ([R, T, F], torch.stft's memory order); the filterbank and
its adjoint multiply only their non-zero bands (banded.py); the window is applied inside the overlap-add.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from distill_core.mel import mel_filterbank

from .banded import BandedMatmul
from .config import MelConfig

LN10 = math.log(10.0)


def overlap_add(frames: torch.Tensor, window: torch.Tensor, hop: int) -> torch.Tensor:
    """[R, T, w] frames times the window, summed at offsets t * hop: [R, (T - 1) * hop + w]."""
    rows, count, width = frames.shape
    window = window.to(frames.dtype)
    if width % hop:
        frames = frames * window
        return F.fold(frames.transpose(1, 2), output_size=(1, (count - 1) * hop + width), kernel_size=(1, width),
                      stride=(1, hop)).view(rows, -1)
    k = width // hop
    blocks = frames.view(rows, count, k, hop)
    pieces = window.view(k, hop)
    out = frames.new_empty(rows, count + k - 1, hop)
    out[:, count:].zero_()
    torch.mul(blocks[:, :, 0], pieces[0], out=out[:, :count])
    for j in range(1, k):
        out[:, j:j + count].addcmul_(blocks[:, :, j], pieces[j])
    return out.view(rows, -1)


def reflect_pad_adjoint(padded: torch.Tensor, pad: int, length: int) -> torch.Tensor:
    """The gradient w.r.t. x of F.pad(x, (pad, pad), 'reflect'), given the gradient w.r.t. the padded signal."""
    if padded.shape[1] < length + 2 * pad:
        padded = F.pad(padded, (0, length + 2 * pad - padded.shape[1]))
    grad = padded[:, pad:pad + length].clone()
    if pad:
        grad[:, 1:pad + 1] += padded[:, :pad].flip(-1)
        grad[:, length - 1 - pad:length - 1] += padded[:, pad + length:length + 2 * pad].flip(-1)
    return grad


class MelScale(nn.Module):
    """One scale: window length, hop, periodic Hann window, and the filterbank as banded products."""

    def __init__(self, window_length: int, n_mels: int, fmin: float, fmax: float, sample_rate: int) -> None:
        super().__init__()
        self.window_length, self.hop = window_length, window_length // 4
        window = torch.hann_window(window_length, periodic=True, dtype=torch.float64).float()
        self.register_buffer("window", window, persistent=False)
        # irfft returns frames / (w / 2) once DC (and Nyquist, for even w) are doubled: fold w / 2 in here.
        self.register_buffer("backward_window", window * (window_length / 2), persistent=False)
        fb = torch.from_numpy(mel_filterbank(sample_rate, window_length, n_mels, fmin=fmin, fmax=fmax))
        self.register_buffer("fb", fb, persistent=False)
        self.to_mel = BandedMatmul(fb.T)  # [..., F] -> [..., n_mels]
        # The adjoint, with the DC (and, for even w, Nyquist) columns doubled: irfft halves every bin but
        # those two, so doubling them makes window * irfft * (w / 2) the exact adjoint of the windowed rfft.
        edges = torch.ones(fb.shape[1])
        edges[0] = 2.0
        if window_length % 2 == 0:
            edges[-1] = 2.0
        self.from_mel = BandedMatmul(fb * edges)  # [..., n_mels] -> [..., F]

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """[R, T, w // 2 + 1] complex STFT of [R, N] signals (centred frames, reflect padding), frames first."""
        return torch.stft(x, self.window_length, self.hop, window=self.window.to(x.dtype), center=True,
                          pad_mode="reflect", return_complex=True).transpose(1, 2)

    def mel(self, spec: torch.Tensor) -> torch.Tensor:
        """[R, T, n_mels] = fb |X|, the magnitude as sqrt(re^2 + im^2) (no complex abs)."""
        parts = torch.view_as_real(spec)
        re, im = parts[..., 0], parts[..., 1]
        return self.to_mel(torch.addcmul(re * re, im, im).sqrt_())

    def adjoint(self, grad_spec: torch.Tensor, length: int) -> torch.Tensor:
        """dL/dx [R, N] from dL/dX [R, T, F] (DC and Nyquist already doubled)."""
        frames = torch.fft.irfft(grad_spec, n=self.window_length)  # [R, T, w]
        return reflect_pad_adjoint(overlap_add(frames, self.backward_window, self.hop), self.window_length // 2,
                                   length)


class MultiScaleMel(nn.Module):
    """DAC's MelSpectrogramLoss(x, y) for [R, N] signals: the sum over scales of log-mel (and mel) L1."""

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList(
            MelScale(w, m, lo, hi, config.sample_rate)
            for w, m, lo, hi in zip(config.window_lengths, config.n_mels, config.fmins, config.fmaxs))

    def _scale(self, scale: MelScale, x: torch.Tensor, y: torch.Tensor, want_grad: bool
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(loss, dL/dx or None) of one scale, all without autograd."""
        cfg = self.config
        target_mel = scale.mel(scale.spectrum(y))
        spec = scale.spectrum(x)
        mel_x = scale.mel(spec)
        n = mel_x.numel()
        loss = mel_x.new_zeros(())
        grad_log = grad_mag = None
        if cfg.log_weight:
            # |log10 c(M)^p - log10 c(Y)^p| = p |log10 c(M) - log10 c(Y)| for p > 0: the power is one factor.
            clamped = mel_x.clamp(min=cfg.clamp_eps)
            log_diff = clamped.log10().sub_(target_mel.clamp(min=cfg.clamp_eps).log10_())
            loss = loss + (cfg.log_weight * cfg.pow / n) * torch.linalg.vector_norm(log_diff, 1)
            if want_grad:
                grad_log = log_diff.sign_().div_(clamped).masked_fill_(mel_x < cfg.clamp_eps, 0.0)
        if cfg.mag_weight:
            diff = mel_x - target_mel
            loss = loss + (cfg.mag_weight / n) * torch.linalg.vector_norm(diff, 1)
            if want_grad:
                grad_mag = diff.sign_()
        if not want_grad:
            return loss, None
        # dL/dM = k_log grad_log + k_mag grad_mag; the last factor rides on the (small) filterbank blocks.
        k_log, k_mag = cfg.log_weight * cfg.pow / (LN10 * n), cfg.mag_weight / n
        if grad_log is not None and grad_mag is not None:
            grad_mel, factor = grad_log.mul_(k_log / k_mag).add_(grad_mag), k_mag
        elif grad_log is not None:
            grad_mel, factor = grad_log, k_log
        elif grad_mag is not None:
            grad_mel, factor = grad_mag, k_mag
        else:
            return loss, x.new_zeros(x.shape)
        # X / |X| (0 where X = 0, torch.abs's gradient) times dL/d|X|; the spectrum is not needed again.
        grad_spec = spec.sgn_().mul_(scale.from_mel(grad_mel, factor))
        return loss, scale.adjoint(grad_spec, x.shape[-1])

    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor, want_grad: bool
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The summed loss of [R, N] signals and, when asked, its gradient w.r.t. x."""
        total = x.new_zeros(())
        grad = None
        for scale in self.scales:
            loss, g = self._scale(scale, x, y, want_grad)
            total = total + loss
            if g is not None:
                grad = g if grad is None else grad.add_(g)
        return total, grad

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of [..., N] signals; the target is a constant."""
        y2 = y.detach().reshape(-1, y.shape[-1])
        if x.requires_grad and torch.is_grad_enabled():
            return _AnalyticMelLoss.apply(x, y2, self)
        with torch.no_grad():
            return self.loss_and_grad(x.reshape(-1, x.shape[-1]), y2, want_grad=False)[0]


class _AnalyticMelLoss(torch.autograd.Function):
    """Loss in forward, gradient computed alongside it; backward only scales the saved gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, module: MultiScaleMel) -> torch.Tensor:
        loss, grad = module.loss_and_grad(x.reshape(-1, x.shape[-1]), y, want_grad=True)
        ctx.save_for_backward(grad.view(x.shape))
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None
