"""The fast multi-resolution STFT loss: auraloss's numerics, with an analytic backward.

auraloss leaves autograd to differentiate its STFT, magnitudes, logs and norms, which stores several
spectrogram-sized tensors per resolution and runs the strided-frame backward of torch.stft. Here, when a
gradient is needed, the forward pass also computes it in closed form:

    per resolution, with M = max(|X|, sqrt(eps)) (optionally mel-filtered) and Y the target's:
    dL/dM = w_sc (M - Y) / (||M - Y|| ||Y||) + w_log d'(log M - log Y) / M + w_lin d'(M - Y)
    dL/dX = dL/d|X| * X / |X|                              (0 where |X| was clamped)
    dL/dframes = window * irfft(dL/dX)  (the adjoint of the real FFT)
    dL/dx = overlap-add of the frames, then the adjoint of the reflect padding

and saves only the signal-sized gradient for backward. The target's STFT is taken without autograd,
the window is a buffer, and no phase is computed. Values and gradients match auraloss to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import STFTConfig
from distill_core.mel import mel_filterbank


class _Resolution(nn.Module):
    """One (fft, hop, win) resolution: its window (zero-padded to fft, as torch.stft pads it) and filterbank."""

    def __init__(self, fft: int, hop: int, win: int, config: STFTConfig) -> None:
        super().__init__()
        self.fft, self.hop, self.win = fft, hop, win
        window = getattr(torch, config.window)(win)
        self.register_buffer("window", window, persistent=False)
        left = (fft - win) // 2
        padded = torch.zeros(fft)
        padded[left:left + win] = window
        # irfft gives frames/(fft/2) once DC and Nyquist are doubled; fold that scale into the window.
        self.register_buffer("backward_window", padded * (fft / 2), persistent=False)
        self.mel = config.scale == "mel"
        if self.mel:
            fb = torch.from_numpy(mel_filterbank(config.sample_rate, fft, config.n_bins))
            self.register_buffer("fb", fb, persistent=False)

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        window = self.window if self.window.dtype == x.dtype else self.window.to(x.dtype)
        return torch.stft(x, self.fft, self.hop, self.win, window, return_complex=True)

    def frames_adjoint(self, grad_spec: torch.Tensor, length: int) -> torch.Tensor:
        """dL/dx from dL/dX (complex, [R, F, T], DC/Nyquist already doubled): irfft, window, OLA, unpad."""
        frames = torch.fft.irfft(grad_spec.transpose(-1, -2), n=self.fft)  # [R, T, fft]
        window = self.backward_window if self.backward_window.dtype == frames.dtype else \
            self.backward_window.to(frames.dtype)
        frames.mul_(window)
        rows, count = frames.shape[0], frames.shape[1]
        pad = self.fft // 2
        padded_length = length + 2 * pad
        if self.fft % self.hop == 0:
            k = self.fft // self.hop
            blocks = frames.view(rows, count, k, self.hop)
            out = frames.new_zeros(rows, count + k - 1, self.hop)
            for j in range(k):
                out[:, j:j + count] += blocks[:, :, j]
            padded = out.view(rows, -1)
        else:
            padded = torch.nn.functional.fold(
                frames.transpose(1, 2), output_size=(1, (count - 1) * self.hop + self.fft),
                kernel_size=(1, self.fft), stride=(1, self.hop)).view(rows, -1)
        if padded.shape[1] < padded_length:
            padded = torch.nn.functional.pad(padded, (0, padded_length - padded.shape[1]))
        grad = padded[:, pad:pad + length].clone()
        grad[:, 1:pad + 1] += padded[:, :pad].flip(-1)
        grad[:, length - 1 - pad:length - 1] += padded[:, pad + length:padded_length].flip(-1)
        return grad


class FastMultiResolutionSTFT(nn.Module):
    """MultiResolutionSTFTLoss(x, y) for [B, C, N] signals, matching auraloss to float rounding."""

    def __init__(self, config: STFTConfig) -> None:
        super().__init__()
        self.config = config
        self.resolutions = nn.ModuleList(_Resolution(f, h, w, config) for f, h, w in
                                         zip(config.fft_sizes, config.hop_sizes, config.win_lengths))

    def _magnitude(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(clamp(re^2 + im^2, eps)), re^2 + im^2 >= eps): auraloss's magnitude, without complex abs."""
        re, im = spec.real, spec.imag
        power = torch.addcmul(re * re, im, im)
        kept = power >= self.config.eps
        return power.clamp_(min=self.config.eps).sqrt_(), kept

    def _target(self, res: _Resolution, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mag, _ = self._magnitude(res.spectrum(y))
        if res.mel:
            mag = torch.matmul(res.fb.to(mag.dtype), mag)
        return mag, mag.log()

    def _resolution(self, res: _Resolution, x: torch.Tensor, y: torch.Tensor, want_grad: bool
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(loss, dL/dx or None) of one resolution, everything without autograd."""
        cfg = self.config
        spec = res.spectrum(x)
        mag, kept = self._magnitude(spec)
        target_mag, target_log = self._target(res, y)
        m = torch.matmul(res.fb.to(mag.dtype), mag) if res.mel else mag
        n = m.numel()
        diff = m - target_mag
        log_diff = m.log().sub_(target_log)
        loss = m.new_zeros(())
        grad_m = None
        if cfg.w_sc:
            num, den = torch.linalg.vector_norm(diff), torch.linalg.vector_norm(target_mag)
            loss = loss + cfg.w_sc * (num / den)
            if want_grad:
                grad_m = diff * torch.where(num > 0, cfg.w_sc / (num * den), 0.0)
        for weight, d, divide in ((cfg.w_log_mag, log_diff, True), (cfg.w_lin_mag, diff, False)):
            if not weight:
                continue
            if cfg.mag_distance == "L1":
                loss = loss + weight * d.abs().mean()
                g = d.sign()
            else:
                loss = loss + weight * d.square().mean()
                g = d * 2.0
            if want_grad:
                g.mul_(weight / n)
                if divide:
                    g.div_(m)
                grad_m = g if grad_m is None else grad_m.add_(g)
        if not want_grad:
            return loss, None
        if grad_m is None:
            return loss, x.new_zeros(x.shape)
        grad_mag = torch.matmul(res.fb.T.to(grad_m.dtype), grad_m) if res.mel else grad_m
        scale = grad_mag.div_(mag).masked_fill_(~kept, 0.0)
        scale[:, 0] *= 2  # irfft halves every bin but DC and Nyquist: double those to undo it uniformly
        if res.fft % 2 == 0:
            scale[:, -1] *= 2
        return loss, res.frames_adjoint(spec * scale, x.shape[-1])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        y2 = y.detach().reshape(-1, shape[-1])
        if y.requires_grad and torch.is_grad_enabled():
            raise ValueError("stft: the fast backend treats target as a constant; use backend = 'auraloss' "
                             "to differentiate through the target")
        if x.requires_grad and torch.is_grad_enabled():
            return _FastSTFTLoss.apply(x, y2, self)
        with torch.no_grad():
            return self.loss_and_grad(x2, y2, want_grad=False)[0]

    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor, want_grad: bool
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        total = x.new_zeros(())
        grad = None
        for res in self.resolutions:
            loss, g = self._resolution(res, x, y, want_grad)
            total = total + loss
            if g is not None:
                grad = g if grad is None else grad.add_(g)
        count = len(self.resolutions)
        if grad is not None:
            grad.div_(count)
        return total / count, grad


class _FastSTFTLoss(torch.autograd.Function):
    """Loss in forward, gradient computed alongside it; backward only scales the saved gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, module: FastMultiResolutionSTFT) -> torch.Tensor:
        loss, grad = module.loss_and_grad(x.reshape(-1, x.shape[-1]), y, want_grad=True)
        ctx.save_for_backward(grad.view(x.shape))
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None
