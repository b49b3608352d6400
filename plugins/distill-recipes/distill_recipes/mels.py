"""The two single-scale log-mel L1 losses of the vocoders, as their training code computes them.

No other distribution offers them: distill-mel's ``mel`` is DAC's loss (centred frames, log10, no epsilon in the
magnitude) and ``audiocraft_msspec`` audiocraft's; neither has HiFi-GAN's framing or Vocos's filters.

- ``hifigan_mel``: HiFi-GAN's ``mel_spectrogram`` (meldataset.py) and train.py's ``F.l1_loss(y_mel, y_g_hat_mel)``.
  Per channel: reflect padding of ``(n_fft - hop_size) // 2`` on both sides, ``torch.stft(center=False)`` with a
  periodic Hann window of ``win_size``, magnitude ``sqrt(re^2 + im^2 + 1e-9)``, librosa's Slaney filters
  (``fmin``, ``fmax``; None is sample_rate / 2, HiFi-GAN's ``fmax_for_loss = null``), ``ln(clamp(mel, 1e-5))``,
  the mean absolute difference.
- ``vocos_mel``: Vocos's ``MelSpecReconstructionLoss`` (vocos/loss.py): torchaudio's ``MelSpectrogram`` with
  ``center = True`` (reflect padding of n_fft // 2), a periodic Hann window of n_fft, magnitude (power 1), HTK
  filters without normalisation from 0 Hz to ``sample_rate // 2``, ``ln(clip(mel, 1e-7))`` (``safe_log``), the
  mean absolute difference.

Both are plain autograd; the filters are ``distill_core.dsp.mel``'s (librosa's, in float64, cast).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch.nn import functional as F

from distill_core import InvalidConfig, LossTerm, Weight
from distill_core.dsp.mel import mel_filterbank
from distill_core.terms.base import Batch, BatchError, check_pair, upcast

Problems = list[tuple[str, str]]
MAX_SIZE = 2**20
"""Largest FFT, window and sample rate accepted (as distill-mel's bound): bigger ones are typos."""
MAX_FILTERBANK = 2**26
"""Largest filterbank (bands times bins) accepted, as distill-mel's."""
HIFIGAN_MAGNITUDE_EPS = 1e-9
HIFIGAN_CLAMP = 1e-5
VOCOS_CLIP = 1e-7


def _size_problems(values: dict[str, int]) -> Problems:
    """Each size a whole number from 1 to 2^20, under its key."""
    return [
        (key, f"expected a whole number from 1 to {MAX_SIZE} (2^20), got {value!r}")
        for key, value in values.items()
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE
    ]


def _band_problems(n_mels: int, n_fft: int, key: str) -> Problems:
    """Why ``n_mels`` bands do not fit an FFT of ``n_fft`` (empty when they do)."""
    if n_mels > n_fft // 2 + 1:
        return [(key, f"expected at most n_fft // 2 + 1 = {n_fft // 2 + 1} mel bands (the FFT's bins), got {n_mels}")]
    if n_mels * (n_fft // 2 + 1) > MAX_FILTERBANK:
        return [
            (key, f"{n_mels} bands of {n_fft // 2 + 1} bins exceed the filterbank bound of {MAX_FILTERBANK} (2^26)")
        ]
    return []


@attrs.define
class HifiganMelConfig:
    """HiFi-GAN's mel loss settings, named as its config_v1.json names them, with its values as defaults."""

    weight: Weight = 1.0
    sampling_rate: int = 22050
    n_fft: int = 1024
    num_mels: int = 80
    hop_size: int = 256
    win_size: int = 1024
    fmin: float = 0.0
    fmax: float | None = None

    def __attrs_post_init__(self) -> None:
        problems = _size_problems(
            {"sampling_rate": self.sampling_rate, "n_fft": self.n_fft, "num_mels": self.num_mels}
            | {"hop_size": self.hop_size, "win_size": self.win_size}
        )
        if not problems:
            if self.win_size > self.n_fft:
                problems.append(("win_size", f"expected at most n_fft={self.n_fft}, got {self.win_size}"))
            if self.hop_size > self.n_fft:
                problems.append(("hop_size", f"expected at most n_fft={self.n_fft}, got {self.hop_size}"))
            problems += _band_problems(self.num_mels, self.n_fft, "num_mels")
            nyquist = self.sampling_rate / 2.0
            top = nyquist if self.fmax is None else self.fmax
            if not 0.0 <= self.fmin < top <= nyquist:
                problems.append(
                    (
                        "fmax" if self.fmax is not None else "fmin",
                        f"expected 0 <= fmin={self.fmin!r} < fmax={top!r} <= sampling_rate / 2 = {nyquist!r}",
                    )
                )
        if problems:
            raise InvalidConfig(problems)

    @property
    def padding(self) -> int:
        """The reflect padding on each side, HiFi-GAN's ``int((n_fft - hop_size) / 2)``."""
        return (self.n_fft - self.hop_size) // 2


@attrs.define
class VocosMelConfig:
    """Vocos's MelSpecReconstructionLoss arguments, named as it names them, with its defaults
    (configs/vocos.yaml trains at these)."""

    weight: Weight = 1.0
    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 100

    def __attrs_post_init__(self) -> None:
        problems = _size_problems(
            {"sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop_length": self.hop_length, "n_mels": self.n_mels}
        )
        if not problems:
            if self.hop_length > self.n_fft:
                problems.append(("hop_length", f"expected at most n_fft={self.n_fft}, got {self.hop_length}"))
            problems += _band_problems(self.n_mels, self.n_fft, "n_mels")
        if problems:
            raise InvalidConfig(problems)


class _SingleScaleMel(LossTerm):
    """A log-mel L1 of waveforms ``recon`` and ``target`` [B, C, N], each channel its own row."""

    requires = ("recon", "target")
    layouts: ClassVar[dict[str, str]] = {"recon": "B, C, N", "target": "B, C, N"}
    zero_at_identity = True
    fb: torch.Tensor
    window: torch.Tensor
    pad: int

    def _rows(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """recon and target as [R, N] rows, checked: shapes, a length the reflect padding allows, a constant target."""
        x, y = check_pair(self.name, batch, "recon", "target", self.layouts["recon"])
        if x.shape[-1] <= self.pad:
            raise BatchError(
                f"{self.name}: batch['recon'] has {x.shape[-1]} samples; the reflect padding of {self.pad} "
                f"needs more than {self.pad}"
            )
        if y.requires_grad and torch.is_grad_enabled():
            raise BatchError(
                f"{self.name}: batch['target'] requires grad, but the {self.name} term treats the target as a "
                "constant; pass target.detach()"
            )
        x, y = upcast(x, y)
        return x.reshape(-1, x.shape[-1]), y.detach().reshape(-1, y.shape[-1]).to(x.dtype)

    def _mel(self, rows: torch.Tensor, n_fft: int, hop: int, center: bool) -> torch.Tensor:
        """[R, n_mels, T] mel magnitudes of [R, N] rows (padded here when not ``center``)."""
        if not center:
            rows = F.pad(rows.unsqueeze(1), (self.pad, self.pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            rows,
            n_fft,
            hop,
            win_length=self.window.shape[0],
            window=self.window.to(rows.dtype),
            center=center,
            pad_mode="reflect",
            return_complex=True,
        )
        return torch.matmul(self.fb.to(rows.dtype), self._magnitude(spec))

    def _magnitude(self, spec: torch.Tensor) -> torch.Tensor:
        """|X| of the complex STFT, as the anchor computes it."""
        raise NotImplementedError


class HifiganMelLoss(_SingleScaleMel):
    """HiFi-GAN's mel loss: L1 between ln-mel magnitudes of recon and target (weight 45 in its train.py)."""

    name = "hifigan_mel"
    config_class = HifiganMelConfig

    def __init__(self, config: HifiganMelConfig) -> None:
        super().__init__(config)
        c = config
        fb = mel_filterbank(c.sampling_rate, c.n_fft, c.num_mels, fmin=c.fmin, fmax=c.fmax)
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)
        window = torch.hann_window(c.win_size, periodic=True)
        self.register_buffer("window", window, persistent=False)
        self.pad = c.padding

    def _magnitude(self, spec: torch.Tensor) -> torch.Tensor:
        """sqrt(re^2 + im^2 + 1e-9), HiFi-GAN's: finite gradient at silence."""
        return (torch.view_as_real(spec).pow(2).sum(-1) + HIFIGAN_MAGNITUDE_EPS).sqrt()

    def forward(self, batch: Batch) -> torch.Tensor:
        """The unweighted loss: mean |ln c(mel(recon)) - ln c(mel(target))|, c = clamp(., 1e-5)."""
        x, y = self._rows(batch)
        c = self.config
        with torch.autocast(x.device.type, enabled=False):
            mel_x = self._mel(x, c.n_fft, c.hop_size, center=False).clamp(min=HIFIGAN_CLAMP).log()
            with torch.no_grad():
                mel_y = self._mel(y, c.n_fft, c.hop_size, center=False).clamp(min=HIFIGAN_CLAMP).log()
            return F.l1_loss(mel_y, mel_x)


class VocosMelLoss(_SingleScaleMel):
    """Vocos's mel loss: L1 between ln-mel magnitudes of recon and target (mel_loss_coeff 45 in its config)."""

    name = "vocos_mel"
    config_class = VocosMelConfig

    def __init__(self, config: VocosMelConfig) -> None:
        super().__init__(config)
        c = config
        # torchaudio's filters lie on bins at k * (sample_rate // 2) / (n_fft / 2): librosa's on that grid's rate
        grid = 2 * (c.sample_rate // 2)
        fb = mel_filterbank(grid, c.n_fft, c.n_mels, fmin=0.0, fmax=float(c.sample_rate // 2), htk=True, norm=None)
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(c.n_fft, periodic=True), persistent=False)
        self.pad = c.n_fft // 2

    def _magnitude(self, spec: torch.Tensor) -> torch.Tensor:
        """|X| (torchaudio's ``abs().pow(1.0)``; its gradient at 0 is 0)."""
        return spec.abs()

    def forward(self, batch: Batch) -> torch.Tensor:
        """The unweighted loss: mean |ln c(mel(target)) - ln c(mel(recon))|, c = clip(., 1e-7)."""
        x, y = self._rows(batch)
        c = self.config
        with torch.autocast(x.device.type, enabled=False):
            mel_x = self._mel(x, c.n_fft, c.hop_length, center=True).clamp(min=VOCOS_CLIP).log()
            with torch.no_grad():
                mel_y = self._mel(y, c.n_fft, c.hop_length, center=True).clamp(min=VOCOS_CLIP).log()
            return F.l1_loss(mel_y, mel_x)
