"""The fast multi-resolution STFT loss: auraloss's numerics, with an analytic backward.

auraloss leaves autograd to differentiate its STFT, magnitudes, logs and norms, which stores several
spectrogram-sized tensors per resolution and runs the strided-frame backward of torch.stft. Here, when a
gradient is needed, the forward pass also computes it in closed form:

    per resolution, with M = max(|X|, sqrt(eps)) (optionally mel-filtered) and Y the target's
    (optionally scaled by alpha = <M, Y> / <Y, Y> per signal, which then depends on M too):
    dL/dM = w_sc (M - Y) / (||M - Y|| ||Y||) + w_log d'(log M - log Y) / M + w_lin d'(M - Y)
            [+ (<dL/dY, Y> / <Y, Y>) Y through alpha]
    dL/dX = dL/d|X| * X / |X|  (0 where |X| was clamped)  [+ i w_phs 2 (angle X - angle Y) / n * X / |X|^2]
    dL/dframes = window * irfft(dL/dX)  (the adjoint of the real FFT)
    dL/dx = overlap-add of the frames, then the adjoint of the reflect padding
            [then the adjoint of the A-weighting FIR filter, a transposed convolution]

and saves only the signal-sized gradient for backward. The target's STFT is taken without autograd,
the window is a buffer, and no phase is computed unless w_phs asks for it. Values and gradients match
auraloss to float rounding.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from distill_core.dsp.frames import overlap_add_into, reflect_pad_adjoint
from distill_core.dsp.mel import mel_filterbank

from .config import STFTConfig


class _Resolution(nn.Module):
    """One (fft, hop, win) resolution: its window (zero-padded to fft, as torch.stft pads it) and filterbank."""

    window: torch.Tensor
    backward_window: torch.Tensor
    fb: torch.Tensor  # only when config.scale == "mel"

    def __init__(self, fft: int, hop: int, win: int, config: STFTConfig) -> None:
        super().__init__()
        self.fft, self.hop, self.win = fft, hop, win
        window = getattr(torch, config.window)(win)
        self.register_buffer("window", window, persistent=False)
        left = (fft - win) // 2
        padded = torch.zeros(fft)
        padded[left : left + win] = window
        # irfft gives frames/(fft/2) once DC and Nyquist are doubled; fold that scale into the window.
        self.register_buffer("backward_window", padded * (fft / 2), persistent=False)
        self.mel = config.scale == "mel"
        if self.mel:
            assert config.sample_rate is not None and config.n_bins is not None  # STFTConfig requires both for mel
            fb = torch.from_numpy(mel_filterbank(config.sample_rate, fft, config.n_bins))
            self.register_buffer("fb", fb, persistent=False)

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        window = self.window if self.window.dtype == x.dtype else self.window.to(x.dtype)
        return torch.stft(x, self.fft, self.hop, self.win, window, return_complex=True)

    def frames_adjoint(self, grad_spec: torch.Tensor, length: int) -> torch.Tensor:
        """dL/dx from dL/dX (complex, [R, F, T], DC/Nyquist already doubled): irfft, window, OLA, unpad."""
        frames = torch.fft.irfft(grad_spec.transpose(-1, -2), n=self.fft)  # [R, T, fft]
        grad_padded = frames.new_zeros(frames.shape[0], length + 2 * (self.fft // 2))
        overlap_add_into(grad_padded, frames, self.backward_window, self.hop)
        return reflect_pad_adjoint(grad_padded, self.fft // 2, length)


def a_weighting_taps(sample_rate: int) -> torch.Tensor:
    """auraloss's 101-tap A-weighting FIR filter (built with scipy), as a [1, 1, 101] float32 tensor."""
    try:
        import scipy.signal  # noqa: F401  (auraloss imports it inside FIRFilter)
    except ImportError as exc:
        raise ImportError(
            "stft: perceptual_weighting = true needs scipy (auraloss designs its A-weighting "
            "filter with scipy.signal); install it with `pip install scipy`"
        ) from exc
    from auraloss.perceptual import FIRFilter

    return FIRFilter(filter_type="aw", fs=sample_rate).fir.weight.data.clone()


COMPONENTS = ("sc_mag_loss", "log_mag_loss", "lin_mag_loss", "phs_loss")
"""auraloss's intermediate terms (output = 'full'), in its order; each unweighted, one value per resolution."""


class FastMultiResolutionSTFT(nn.Module):
    """MultiResolutionSTFTLoss(x, y) for [B, C, N] signals, matching auraloss to float rounding."""

    taps: torch.Tensor  # only when config.perceptual_weighting

    def __init__(self, config: STFTConfig) -> None:
        super().__init__()
        self.config = config
        self.resolutions = nn.ModuleList(
            _Resolution(f, h, w, config) for f, h, w in zip(config.fft_sizes, config.hop_sizes, config.win_lengths)
        )
        if config.perceptual_weighting:
            assert config.sample_rate is not None  # STFTConfig requires it for perceptual_weighting
            self.register_buffer("taps", a_weighting_taps(config.sample_rate), persistent=False)
        self.components: torch.Tensor | None = None

    def _magnitude(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(clamp(re^2 + im^2, eps)), re^2 + im^2 >= eps): auraloss's magnitude, without complex abs."""
        re, im = spec.real, spec.imag
        power = torch.addcmul(re * re, im, im)
        kept = power >= self.config.eps
        return power.clamp_(min=self.config.eps).sqrt_(), kept

    def _filter(self, x: torch.Tensor, adjoint: bool = False) -> torch.Tensor:
        """The A-weighting pre-emphasis of [R, N] rows (auraloss's conv1d), or its adjoint for the gradient."""
        taps = self.taps.to(x.dtype)
        conv = torch.nn.functional.conv_transpose1d if adjoint else torch.nn.functional.conv1d
        return conv(x.unsqueeze(1), taps, padding=taps.shape[-1] // 2).squeeze(1)

    def _distance(self, d: torch.Tensor, weight: float, want_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the reduced L1 or L2 distance of d, weight times its derivative in d) under the config's reduction."""
        cfg = self.config
        l1 = cfg.mag_distance == "L1"
        elements = d.abs() if l1 else d.square()
        value = elements.mean() if cfg.reduction == "mean" else elements.sum()
        if not want_grad:
            return value, None
        g = d.sign() if l1 else d * 2.0
        return value, g.mul_(weight / d.numel() if cfg.reduction == "mean" else weight)

    def _resolution(
        self, res: _Resolution, x: torch.Tensor, y: torch.Tensor, want_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(loss, its four unweighted components if output = 'full', dL/dx or None) of one resolution."""
        cfg = self.config
        spec, target_spec = res.spectrum(x), res.spectrum(y)
        mag, kept = self._magnitude(spec)
        target, _ = self._magnitude(target_spec)
        target_angle = target_spec.angle() if cfg.w_phs else None
        del target_spec  # keep one complex spectrogram alive, not two
        m = torch.matmul(res.fb.to(mag.dtype), mag) if res.mel else mag
        if res.mel:
            target = torch.matmul(res.fb.to(target.dtype), target)
        if cfg.scale_invariance:  # auraloss's optimal scaling of the target, one alpha per signal
            target_energy = target.square().sum((-2, -1))
            alpha = (m * target).sum((-2, -1)) / target_energy
            scaled = target * alpha[:, None, None]
        else:
            scaled = target
        parts: list[torch.Tensor | None] = [None] * len(COMPONENTS)
        grad_m: torch.Tensor | None = None  # dL/dm, accumulated in place once it exists
        grad_t = m.new_zeros(m.shape) if want_grad and cfg.scale_invariance else None
        diff = m - scaled
        if cfg.w_sc:
            num, den = torch.linalg.vector_norm(diff), torch.linalg.vector_norm(scaled)
            parts[0] = num / den
            if want_grad:
                g = diff * torch.where(num > 0, cfg.w_sc / (num * den), 0.0)
                grad_m = g
                if grad_t is not None:
                    grad_t.sub_(g).sub_(scaled * (cfg.w_sc * num / den**3))
        if cfg.w_log_mag:
            parts[1], g_log = self._distance(m.log().sub_(scaled.log()), cfg.w_log_mag, want_grad)
            if g_log is not None:  # want_grad
                if grad_t is not None:
                    grad_t.addcdiv_(g_log, scaled, value=-1.0)
                g_log.div_(m)
                grad_m = g_log if grad_m is None else grad_m.add_(g_log)
        if cfg.w_lin_mag:
            parts[2], g_lin = self._distance(diff, cfg.w_lin_mag, want_grad)
            if g_lin is not None:  # want_grad
                if grad_t is not None:
                    grad_t.sub_(g_lin)
                grad_m = g_lin if grad_m is None else grad_m.add_(g_lin)
        phase_scale = None
        if target_angle is not None:  # w_phs: mean squared angle difference of the unfiltered spectra (mse_loss's mean)
            phase_diff = spec.angle().sub_(target_angle)
            parts[3] = phase_diff.square().mean()
            if want_grad:
                power = spec.abs().square()
                g = phase_diff.mul_(2.0 * cfg.w_phs / phase_diff.numel())
                phase_scale = torch.where(power > 0, g / power, 0.0)
        weights = (cfg.w_sc, cfg.w_log_mag, cfg.w_lin_mag, cfg.w_phs)
        loss = m.new_zeros(())
        for w, part in zip(weights, parts):
            if part is not None:
                loss = loss + w * part
        components = None
        if cfg.output == "full":
            components = torch.stack([m.new_zeros(()) if p is None else p for p in parts])
        if not want_grad:
            return loss, components, None
        if grad_m is None:
            grad_m = m.new_zeros(m.shape)
        if grad_t is not None:  # alpha depends on m: d alpha / dm = target / <target, target>
            grad_m.add_(target * ((grad_t * target).sum((-2, -1)) / target_energy)[:, None, None])
        grad_mag = torch.matmul(res.fb.T.to(grad_m.dtype), grad_m) if res.mel else grad_m
        scale = grad_mag.div_(mag).masked_fill_(~kept, 0.0)
        grad_spec = spec * (scale if phase_scale is None else torch.complex(scale, phase_scale))
        grad_spec[:, 0] *= 2  # irfft halves every bin but DC and Nyquist: double those to undo it uniformly
        if res.fft % 2 == 0:
            grad_spec[:, -1] *= 2
        return loss, components, res.frames_adjoint(grad_spec, x.shape[-1])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        y2 = y.detach().reshape(-1, shape[-1])
        if y.requires_grad and torch.is_grad_enabled():
            raise ValueError(
                "stft: the fast backend treats target as a constant; use backend = 'auraloss' "
                "to differentiate through the target"
            )
        if x.requires_grad and torch.is_grad_enabled():
            return _FastSTFTLoss.apply(x, y2, self)
        with torch.no_grad():
            return self.loss_and_grad(x2, y2, want_grad=False)[0]

    def loss_and_grad(
        self, x: torch.Tensor, y: torch.Tensor, want_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss of [R, N] rows and, if asked, its gradient; keeps the [4, resolutions] components."""
        if self.config.perceptual_weighting:
            x, y = self._filter(x), self._filter(y)
        total = x.new_zeros(())
        grad = None
        components: list[torch.Tensor] = []
        for res in self.resolutions:
            assert isinstance(res, _Resolution)  # the ModuleList holds only _Resolution (__init__)
            loss, parts, g = self._resolution(res, x, y, want_grad)
            total = total + loss
            if parts is not None:  # output = 'full'
                components.append(parts)
            if g is not None:
                grad = g if grad is None else grad.add_(g)
        if self.config.output == "full":
            self.components = torch.stack(components, dim=1)
        count = len(self.resolutions)
        if grad is not None:
            grad.div_(count)
            if self.config.perceptual_weighting:
                grad = self._filter(grad, adjoint=True)
        return total / count, grad


class _SavedGradient(Protocol):
    """What _FastSTFTLoss uses of autograd's ctx (torch's FunctionCtx declares no ``saved_tensors``)."""

    saved_tensors: tuple[torch.Tensor, ...]

    def save_for_backward(self, *tensors: torch.Tensor) -> None: ...


class _FastSTFTLoss(torch.autograd.Function):
    """Loss in forward, gradient computed alongside it; backward only scales the saved gradient."""

    @staticmethod
    def forward(ctx: _SavedGradient, x: torch.Tensor, y: torch.Tensor, module: FastMultiResolutionSTFT) -> torch.Tensor:
        loss, grad = module.loss_and_grad(x.reshape(-1, x.shape[-1]), y, want_grad=True)
        assert grad is not None  # want_grad=True: every resolution returns its gradient
        ctx.save_for_backward(grad.view(x.shape))
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: _SavedGradient, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None
