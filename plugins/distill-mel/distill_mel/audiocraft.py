"""audiocraft's multi-scale mel loss (``msspec``) with the mel term's closed-form backward.

audiocraft 1.3.0, audiocraft/losses/specloss.py, MultiScaleMelSpectrogramLoss: for i in range_start ...
range_end - 1, window w = 2^i, hop h = w // 4, a signal is reflect-padded by p = (w - h) // 2 on each side,
zero-padded on the right to whole frames, and framed without centring (torchaudio's MelSpectrogram with
center = False, a periodic Hann window, power 2, HTK filters without normalisation). With M the mel power of
recon, Y the target's, n the number of mel entries and a_i = sqrt(w - 1) (alphas) or 1:

    L = sum_i [ mean|M - Y| + a_i mean (log10(floor + M) - log10(floor + Y))^2 ] / (sum_i (a_i + 1) if normalized)

``normalized`` also divides every spectrum by the window's L2 norm (torchaudio's "window" normalisation).
The gradient, computed in forward:

    dL/dM = (sign(M - Y) + 2 a_i (log10(floor + M) - log10(floor + Y)) / (ln 10 (floor + M))) / (n norm)
    dL/dX = 2 (fb^T dL/dM) X / ||window||^2                 (|X|^2's gradient, with the normalisation)

then the window, inverse real FFT and overlap-add of the mel term (MelScale.adjoint_into), the zero tail
dropped and the reflect padding folded back (distill_core.dsp.frames).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from distill_core.dsp.frames import reflect_pad_adjoint

from .config import AudiocraftConfig
from .fast import LN10, ClosedFormLoss, MelScale


def whole_frames(length: int, window: int, hop: int) -> int:
    """audiocraft's pad_for_conv1d: the zeros appended so that the last frame is full (ceil of the frames)."""
    frames = -(-(length - window) // hop) + 1
    return (frames - 1) * hop + window - length


class AudiocraftMel(ClosedFormLoss):
    """MultiScaleMelSpectrogramLoss(x, y) for [R, N] signals, the target a constant."""

    def __init__(self, config: AudiocraftConfig) -> None:
        super().__init__()
        self.config = config
        # torchaudio places FFT bin k at k * (sample_rate // 2) / (n_fft / 2): the grid of a rate 2 * (sr // 2),
        # the same as librosa's k * sr / n_fft for even rates, one Hz lower for odd ones.
        grid_rate = 2 * (config.sample_rate // 2)
        scales = [
            MelScale(
                w, config.n_mels, config.f_min, config.fmax, grid_rate, htk=True, norm=None, window=torch.hann_window(w)
            )  # torchaudio's window_fn(w), float32 throughout
            for w in config.window_lengths
        ]
        self.scales = torch.nn.ModuleList(scales)
        self.pads = [(w - w // 4) // 2 for w in config.window_lengths]
        self.pad = max(self.pads)
        self.alphas = [math.sqrt(w - 1) if config.alphas else 1.0 for w in config.window_lengths]
        self.norm = sum(a + 1 for a in self.alphas) if config.normalized else 1.0
        # |X / ||window|| |^2 = |X|^2 / sum(window^2): folded into the filterbank products as a factor.
        self.power_scale = [1.0 / float(s.window.double().pow(2).sum()) if config.normalized else 1.0 for s in scales]

    def _scale(self, i: int, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        """The loss of scale i from its padded signals, adding its gradient to ``grad`` when given."""
        scale, alpha, c2, floor = self.scales[i], self.alphas[i], self.power_scale[i], self.config.floor_level
        assert isinstance(scale, MelScale)  # the ModuleList holds only MelScale (__init__)
        target_mel = scale.to_mel(scale.power(scale.spectrum(y)), c2)
        spec = scale.spectrum(x)
        mel_x = scale.to_mel(scale.power(spec), c2)
        n = mel_x.numel()
        diff = mel_x - target_mel
        shifted = mel_x.add_(floor)  # floor + M, in place: M itself is no longer needed
        log_diff = shifted.log10().sub_(target_mel.add_(floor).log10_())
        loss = (diff.abs().sum() + alpha * log_diff.square().sum()) / (n * self.norm)
        if grad is None:
            return loss
        # n * norm * dL/dM, then fb^T with the factor 2 c2 / (n norm) riding on the filterbank blocks.
        grad_mel = log_diff.div_(shifted).mul_(2.0 * alpha / LN10).add_(diff.sign_())
        grad_power = scale.from_mel(grad_mel, 2.0 * c2 / (n * self.norm))
        scale.adjoint_into(grad, spec.mul_(grad_power))
        return loss

    def loss_and_grad(
        self, x: torch.Tensor, y: torch.Tensor, want_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss of [R, N] signals and, when asked, its gradient w.r.t. x.

        Both signals are reflect-padded once, for the longest window; each scale reads a slice of that, plus
        its own zero tail (a copy, only where the frames do not end on the signal's last sample).
        """
        pad, length = self.pad, x.shape[-1]
        x_padded, y_padded = (F.pad(s.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1) for s in (x, y))
        grad_padded = torch.zeros_like(x_padded) if want_grad else None
        total = x.new_zeros(())
        for i, (scale, p) in enumerate(zip(self.scales, self.pads)):
            assert isinstance(scale, MelScale)  # the ModuleList holds only MelScale (__init__)
            span = slice(pad - p, pad + length + p)
            tail = whole_frames(length + 2 * p, scale.window_length, scale.hop)
            xs, ys = (F.pad(s[:, span], (0, tail)) if tail else s[:, span] for s in (x_padded, y_padded))
            if grad_padded is None:  # not want_grad
                total = total + self._scale(i, xs, ys, None)
                continue
            grad = grad_padded[:, span] if not tail else torch.zeros_like(xs)
            total = total + self._scale(i, xs, ys, grad)
            if tail:
                grad_padded[:, span] += grad[:, : length + 2 * p]
        return total, reflect_pad_adjoint(grad_padded, pad, length) if grad_padded is not None else None
