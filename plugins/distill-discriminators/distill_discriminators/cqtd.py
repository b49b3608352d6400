"""BigVGAN-v2's multi-scale sub-band CQT discriminator (MS-SB-CQTD; Gu et al. 2024, adopted by BigVGAN-v2): the
signal upsampled 2x, a constant-Q transform per scale (real and imaginary parts as channels), one conv per octave
(the sub-bands), then dilated 2-D convs along time, strided along frequency.

The CQT is the recursive-downsampling one (Schörkhuber & Klapuri 2010, as nnAudio's ``CQT2010v2``): the kernels
of the top octave only, applied to the signal low-passed and halved once per octave below; the 2x upsampling is a
Hann-windowed sinc interpolator (torchaudio's ``Resample`` defaults). Both are written here on torch ops, so the
plugin needs neither nnAudio (scipy, numpy) nor torchaudio's compiled library.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from .base import (
    CommonOptions,
    Discriminator,
    SubOutput,
    check_positive,
    check_width,
    conv_stack,
    raise_problems,
    scaled,
)
from .convs import Norm, conv2d
from .msstftd import same_padding

LOWPASS_TAPS = 256  # the FIR halving the signal between octaves, and the early downsampling's


@attrs.define
class CQTDConfig(CommonOptions):
    """One sub-discriminator per (hop, octaves, bins per octave) scale; BigVGAN's ``cqtd_*`` options without the
    prefix (``n_octaves`` / ``bins_per_octaves`` are its ``cqtd_n_octaves`` / ``cqtd_bins_per_octaves``).

    ``sample_rate``: the input's (BigVGAN's ``sampling_rate``); with ``upsample`` the CQT runs at twice it, as
    BigVGAN's does. ``fmin``: the lowest bin's frequency (nnAudio's default, C1). ``normalize_input`` is BigVGAN's
    ``cqtd_normalize_volume``. Channels: ``filters * filters_scale ** i`` capped at ``max_filters``, times
    ``width``; the per-octave convs and the first conv have no weight reparametrisation (as BigVGAN builds them),
    ``norm`` applies to the others. ``in_channels`` must be 1: channels are judged as separate signals.
    """

    sample_rate: int = 24000
    hop_lengths: tuple[int, ...] = (512, 256, 256)
    n_octaves: tuple[int, ...] = (9, 9, 9)
    bins_per_octaves: tuple[int, ...] = (24, 36, 48)
    fmin: float = 32.70
    filters: int = 32
    max_filters: int = 1024
    filters_scale: int = 1
    dilations: tuple[int, ...] = (1, 2, 4)
    in_channels: int = 1
    out_channels: int = 1
    kernel_size: tuple[int, int] = (3, 9)
    stride: tuple[int, int] = (1, 2)
    negative_slope: float = 0.1
    upsample: bool = True
    norm: Norm = "weight"
    width: float = 1.0

    @property
    def cqt_rate(self) -> int:
        """The rate the CQT sees: twice the input's where it is upsampled."""
        return self.sample_rate * (2 if self.upsample else 1)

    def __attrs_post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        for name in ("sample_rate", "filters", "max_filters", "filters_scale", "in_channels", "out_channels"):
            check_positive(problems, name, getattr(self, name))
        for name in ("hop_lengths", "n_octaves", "bins_per_octaves", "dilations", "kernel_size", "stride"):
            check_positive(problems, name, getattr(self, name))  # each entry
        check_width(problems, self.width)
        if not (math.isfinite(self.fmin) and self.fmin > 0):
            problems.append(("fmin", f"expected a frequency > 0 in Hz, got {self.fmin!r}"))
        if self.in_channels != 1 and self.in_channels >= 1:
            problems.append(
                ("in_channels", f"expected 1 (channels are judged as separate signals), got {self.in_channels}")
            )
        lengths = {k: len(getattr(self, k)) for k in ("hop_lengths", "n_octaves", "bins_per_octaves")}
        if len(set(lengths.values())) > 1:
            problems.append(
                (
                    "hop_lengths",
                    "expected one entry per scale: " + ", ".join(f"{k} has {n}" for k, n in lengths.items()),
                )
            )
        elif not problems:
            for i, scale in enumerate(zip(self.hop_lengths, self.n_octaves, self.bins_per_octaves)):
                problems += scale_problems(i, self.cqt_rate, *scale, self.fmin)
        raise_problems(problems)


class CQTPlan(NamedTuple):
    """Where one scale's CQT runs: its Q, the top octave's lowest bin, the early downsampling (a power of 2)
    and the rate and hop after it."""

    q: float
    top_fmin: float
    top_fmax: float
    factor: int
    rate: float
    hop: int


def plan_cqt(rate: int, hop: int, n_octaves: int, bins_per_octave: int, fmin: float) -> CQTPlan:
    """One scale's geometry, as CQT2010 plans it: the top octave's bins, and how often the signal can be halved
    before it (librosa's early downsampling: while the top octave's band and the hop allow)."""
    q = 1.0 / (2 ** (1 / bins_per_octave) - 1)
    top_fmax = fmin * 2 ** (n_octaves - 1) * 2 ** ((bins_per_octave - 1) / bins_per_octave)
    top_fmin = top_fmax / 2 ** (1 - 1 / bins_per_octave)
    cutoff = top_fmax * (1 + 0.5 * 1.5 / q)  # the Hann window's bandwidth above the top bin
    by_band = max(0, int(math.ceil(math.log2(0.85 * (rate // 2) / cutoff)) - 1) - 1)
    by_hop = max(0, int(math.ceil(math.log2(hop))) - n_octaves + 1)
    factor = 2 ** min(by_band, by_hop)
    return CQTPlan(q, top_fmin, top_fmax, factor, rate / factor, hop // factor)


def scale_problems(
    i: int, rate: int, hop: int, n_octaves: int, bins_per_octave: int, fmin: float
) -> list[tuple[str, str]]:
    """A scale whose top bin lies above the CQT's Nyquist frequency, or whose hop cannot be halved once per
    octave (the octaves' frames would not line up)."""
    plan = plan_cqt(rate, hop, n_octaves, bins_per_octave, fmin)
    problems = []
    if plan.top_fmax > rate / 2:
        problems.append(
            (
                f"n_octaves[{i}]",
                f"{n_octaves} octaves from fmin {fmin} Hz reach {plan.top_fmax:.0f} Hz, above the CQT's Nyquist "
                f"frequency {rate / 2:g} Hz: expected fewer octaves or a lower fmin",
            )
        )
    halvings = 2 ** (n_octaves - 1)
    if plan.hop % halvings:
        problems.append(
            (
                f"hop_lengths[{i}]",
                f"expected a multiple of {halvings * plan.factor} (halved once for each of {n_octaves} octaves"
                + (f", after downsampling by {plan.factor}" if plan.factor > 1 else "")
                + f"), got {hop}",
            )
        )
    return problems


def lowpass_taps(band: float, transition: float, taps: int = LOWPASS_TAPS) -> torch.Tensor:
    """A linear-phase low-pass FIR by frequency sampling (scipy.signal.firwin2's method), float64: gain 1 up to
    ``band / (1 + transition)``, 0 from ``band * (1 + transition)``, linear between (fractions of Nyquist), the
    impulse response delayed to its centre and Hamming-windowed."""
    grid = torch.linspace(0.0, 1.0, 1 + 2 ** math.ceil(math.log2(taps)), dtype=torch.float64)
    low, high = band / (1 + transition), band * (1 + transition)
    gain = ((high - grid) / (high - low)).clamp(0.0, 1.0)
    delay = torch.exp(-1j * math.pi * (taps - 1) / 2 * grid)
    response = torch.fft.irfft(gain * delay)[:taps]
    return response * torch.hamming_window(taps, periodic=False, dtype=torch.float64)


def top_octave_kernels(plan: CQTPlan, bins_per_octave: int) -> torch.Tensor:
    """The top octave's complex kernels, ``[bins, n_fft]`` complex128: Hann-windowed complex exponentials, each
    ``ceil(Q * rate / f)`` long, L1-normalised, centred in a power-of-2 frame."""
    freqs = plan.top_fmin * 2.0 ** (torch.arange(bins_per_octave, dtype=torch.float64) / bins_per_octave)
    lengths = [int(n) for n in torch.ceil(plan.q * plan.rate / freqs)]
    n_fft = 2 ** math.ceil(math.log2(max(lengths)))
    kernels = torch.zeros(bins_per_octave, n_fft, dtype=torch.complex128)
    for k, (f, n) in enumerate(zip(freqs.tolist(), lengths)):
        start = math.ceil(n_fft / 2 - n / 2) - n % 2
        t = torch.arange(-((n + 1) // 2), n // 2, dtype=torch.float64)  # the window's samples about its centre
        atom = torch.hann_window(n, periodic=True, dtype=torch.float64) * torch.exp(2j * math.pi * f / plan.rate * t)
        atom = atom / n
        kernels[k, start : start + n] = atom / atom.abs().sum()
    return kernels


class ConstantQ(nn.Module):
    """A complex CQT of ``[B, 1, N]`` as ``[B, 2, frames, bins]`` (real, imaginary; lowest bin first), scaled
    as librosa's (by the square root of each bin's kernel length)."""

    kernels: torch.Tensor
    halve: torch.Tensor
    early: torch.Tensor
    scale: torch.Tensor

    def __init__(self, rate: int, hop: int, n_octaves: int, bins_per_octave: int, fmin: float) -> None:
        super().__init__()
        plan = plan_cqt(rate, hop, n_octaves, bins_per_octave, fmin)
        self.hop, self.n_octaves, self.factor = plan.hop, n_octaves, plan.factor
        kernels = top_octave_kernels(plan, bins_per_octave).to(torch.complex64)
        # real parts then the negated imaginary ones, one conv for both (the conjugate kernel's correlation)
        stacked = torch.cat([kernels.real, -kernels.imag])[:, None]
        self.pad = stacked.shape[-1] // 2
        self.register_buffer("kernels", stacked, persistent=False)
        self.register_buffer("halve", lowpass_taps(0.5, 0.001).float()[None, None], persistent=False)
        early = lowpass_taps(1 / plan.factor, 0.03).float()[None, None] if plan.factor > 1 else torch.zeros(0)
        self.register_buffer("early", early, persistent=False)
        freqs = fmin * 2.0 ** (torch.arange(n_octaves * bins_per_octave, dtype=torch.float64) / bins_per_octave)
        lengths = torch.ceil(plan.q * plan.rate / freqs).float()
        self.register_buffer("scale", (lengths.sqrt() * plan.factor)[:, None], persistent=False)

    @staticmethod
    def lowpass(x: torch.Tensor, taps: torch.Tensor, factor: int) -> torch.Tensor:
        """Low-pass filter and keep every ``factor``-th sample."""
        return F.conv1d(x, taps.to(x.dtype), stride=factor, padding=(taps.shape[-1] - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor > 1:
            x = self.lowpass(x, self.early, self.factor)
        kernels, octaves, hop = self.kernels.to(x.dtype), [], self.hop
        for i in range(self.n_octaves):  # top octave first; each lower one on the signal halved again
            if i:
                x, hop = self.lowpass(x, self.halve, 2), hop // 2
            octaves.append(F.conv1d(F.pad(x, (self.pad, self.pad)), kernels, stride=hop))
        b, frames = x.shape[0], octaves[0].shape[-1]
        spec = torch.cat([o.view(b, 2, -1, frames) for o in reversed(octaves)], dim=2)
        return (spec * self.scale.to(x.dtype)).transpose(-1, -2)


def upsampling_taps(zeros: int = 6, rolloff: float = 0.99) -> tuple[torch.Tensor, int]:
    """A 2x upsampler's windowed-sinc taps, ``[2, 1, 2 * reach + 1]`` float32, and ``reach``: one row for the
    input's own instants, one for the points halfway between; the sinc's cutoff at ``rolloff`` times the input's
    Nyquist frequency, cut off (Hann window) at ``zeros`` zero crossings."""
    reach = math.ceil(zeros / rolloff)
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float64)
    t = (rolloff * (offsets - torch.tensor([[0.0], [0.5]], dtype=torch.float64))).clamp(-zeros, zeros)
    taps = rolloff * torch.sinc(t) * torch.cos(math.pi * t / (2 * zeros)) ** 2
    return taps.float()[:, None], reach


class Upsample2x(nn.Module):
    """Band-limited 2x upsampling of ``[B, 1, N]`` to ``[B, 1, 2N]`` (zero beyond the ends)."""

    taps: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        taps, self.reach = upsampling_taps()
        self.register_buffer("taps", taps, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phases = F.conv1d(F.pad(x, (self.reach, self.reach)), self.taps.to(x.dtype))  # [B, 2, N]
        return phases.transpose(1, 2).reshape(x.shape[0], 1, -1)


class CQTDiscriminator(nn.Module):
    """One scale: CQT, one conv per octave (its sub-band), a plain conv, dilated strided convs, a square conv."""

    def __init__(self, hop: int, n_octaves: int, bins_per_octave: int, config: CQTDConfig) -> None:
        super().__init__()
        self.config, self.bins_per_octave = config, bins_per_octave
        self.cqt = ConstantQ(config.cqt_rate, hop, n_octaves, bins_per_octave, config.fmin)
        k, square = config.kernel_size, (config.kernel_size[0],) * 2

        def channels(i: int) -> int:
            return scaled(min(config.filters_scale**i * config.filters, config.max_filters), config.width)

        self.band_convs = nn.ModuleList(conv2d(2, 2, k, padding=same_padding(k), norm="none") for _ in range(n_octaves))
        convs = [conv2d(2, channels(0), k, padding=same_padding(k), norm="none")]
        cin = channels(0)  # BigVGAN's second conv expects channels(1): they differ only where it cannot run
        for i, d in enumerate(config.dilations):
            cout = channels(i + 1)
            pad = same_padding(k, (d, 1))
            convs.append(conv2d(cin, cout, k, stride=config.stride, dilation=(d, 1), padding=pad, norm=config.norm))
            cin = cout
        cout = channels(len(config.dilations) + 1)
        convs.append(conv2d(cin, cout, square, padding=same_padding(square), norm=config.norm))
        self.convs = nn.ModuleList(convs)
        self.conv_post = conv2d(cout, config.out_channels, square, padding=same_padding(square), norm=config.norm)

    def forward(self, x: torch.Tensor) -> SubOutput:
        bands = self.cqt(x).split(self.bins_per_octave, dim=-1)
        z = torch.cat([conv(band) for conv, band in zip(self.band_convs, bands)], dim=-1)
        return conv_stack(self.convs, self.conv_post, z, self.config.negative_slope, self.config)


class CQTD(Discriminator):
    """Multi-scale sub-band CQT discriminator: the signal upsampled once, one CQTDiscriminator per scale."""

    name = "cqtd"
    config_class = CQTDConfig
    # Judged apart in D's step, sub-discriminator by sub-discriminator (judge_apart): over fake and real
    # concatenated its step peaked 42 MiB (17%) higher (64 filters, [1, 1, 16384] each, CPU), as BigVGAN's does not.
    judges_jointly = False

    def __init__(self, config: CQTDConfig) -> None:
        super().__init__(config)
        self.upsample = Upsample2x() if config.upsample else nn.Identity()
        self.discriminators = nn.ModuleList(
            CQTDiscriminator(h, n, b, config)
            for h, n, b in zip(config.hop_lengths, config.n_octaves, config.bins_per_octaves)
        )

    def judge(self, x: torch.Tensor) -> list[SubOutput]:
        x = self.upsample(x)
        return [d(x) for d in self.discriminators]

    def judge_apart(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[list[SubOutput], list[SubOutput]]:
        """Real and fake through each sub-discriminator in turn, as BigVGAN's forward runs them: in the backward,
        each sub-discriminator's weight gradient is complete before the next one's starts."""
        up_real, up_fake = self.upsample(self.prepare(real)), self.upsample(self.prepare(fake))
        pairs = [(d(up_real), d(up_fake)) for d in self.discriminators]
        return [r for r, _ in pairs], [f for _, f in pairs]
