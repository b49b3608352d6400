"""STOI (Taal et al. 2011) and ESTOI (Jensen & Taal 2016) of batched 10 kHz signals, in torch, without host sync.

Both measures compare short-time 1/3-octave envelopes of a clean and a processed signal: 256-sample Hann
frames with 50 % overlap, a 512-point FFT, 15 bands from 150 Hz, and segments of 30 frames (384 ms).
Frames where the clean signal is more than 40 dB below its loudest frame are removed first, and the kept
frames are overlap-added again before the analysis, as the reference implementation does.

Removing frames changes each signal's length, which depends on the data. Here the kept frames are moved to
the front of a fixed-size buffer (a stable sort of the keep mask), every later step runs on the full buffer,
and only the frames and segments the reference would have are counted in the final mean. The number kept
stays a tensor, so no step reads a value back to the host.

Precision: every rounding of a waveform sample (resampling, windowing, overlap-add, the FFT) adds white
noise about 150 dB below the signal, and a band that holds less than that (a low-passed signal's upper
bands) is then measured as noise. So the steps up to the band energies run in float64 (wide_dtype), as
the reference does, and only the segment statistics, most of the cost, run in the caller's dtype.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

RATE = 10_000  # Hz: both measures are defined at this rate
FRAME = 256  # samples per analysis frame
HOP = FRAME // 2
FFT_SIZE = 512
BANDS = 15
LOWEST_CENTRE = 150.0  # Hz, centre of the first 1/3-octave band
SEGMENT = 30  # frames per intermediate-intelligibility segment
EPS = float(np.finfo(np.float64).eps)  # the reference's guard in norms and logs, kept for equal values
MIN_FRAMES = SEGMENT + 1  # analysis frames a signal must hold for one segment to be possible


def wide_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the steps up to the band energies: float64, or float32 where the device has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def frame_window(device: torch.device | str | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """MATLAB's ``hanning(256)``: the symmetric Hann window of 258 points without its two zeros, computed on
    ``device`` (no copy from the host)."""
    k = torch.arange(1, FRAME + 1, dtype=dtype, device=device)
    return 0.5 - 0.5 * torch.cos(2 * math.pi * k / (FRAME + 1))


def third_octave_matrix() -> torch.Tensor:
    """[BANDS, FFT_SIZE // 2 + 1] of 0/1: FFT bin b belongs to band i when it lies between the bins nearest
    to the band's lower edge (included) and upper edge (excluded), edges at 150 Hz * 2^((2i -+ 1) / 6)."""
    bin_hz = RATE / FFT_SIZE
    matrix = torch.zeros(BANDS, FFT_SIZE // 2 + 1, dtype=torch.float64)
    for i in range(BANDS):
        low, high = (LOWEST_CENTRE * 2 ** ((2 * i + s) / 6) for s in (-1, 1))
        matrix[i, round(low / bin_hz) : round(high / bin_hz)] = 1.0
    return matrix


def analysis_frames(length: int) -> int:
    """How many frames the reference cuts from ``length`` samples: starts 0, HOP, ... below length - FRAME."""
    return max(0, -(-(length - FRAME) // HOP))


def kept_frames(
    clean: torch.Tensor, processed: torch.Tensor, window: torch.Tensor, dyn_range: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windowed frames of both signals [R, F, FRAME] with the clean signal's loud frames first, in order, and
    the rest zeroed; and how many were kept per row, [R]."""
    count = analysis_frames(clean.shape[-1])
    frames = [s.unfold(-1, FRAME, HOP)[:, :count] * window for s in (clean, processed)]
    with torch.no_grad():
        level = 20 * torch.log10(torch.linalg.vector_norm(frames[0], dim=-1) + EPS)
        loud = level > level.amax(dim=-1, keepdim=True) - dyn_range
        kept = loud.sum(dim=-1)
        order = torch.sort((~loud).to(torch.uint8), dim=-1, stable=True).indices
        valid = torch.arange(count, device=clean.device) < kept[:, None]
    index = order[..., None].expand(-1, -1, FRAME)
    clean_kept, processed_kept = (torch.gather(f, 1, index) * valid[..., None] for f in frames)
    return clean_kept, processed_kept, kept


def reframed(frames: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Overlap-add frames [R, F, FRAME] at HOP and cut the result into windowed frames again, [R, F, FRAME].

    With 50 % overlap, block k of the sum is the first half of frame k plus the second half of frame k - 1,
    and new frame j is blocks j and j + 1. Of the F new frames, the reference keeps the first kept - 1.
    """
    first, second = frames[..., :HOP], frames[..., HOP:]
    blocks = F.pad(first, (0, 0, 0, 1)) + F.pad(second, (0, 0, 1, 0))  # [R, F + 1, HOP]
    return torch.cat([blocks[:, :-1], blocks[:, 1:]], dim=-1) * window


def envelopes(frames: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
    """1/3-octave band magnitudes of windowed frames [R, F, FRAME] -> [R, BANDS, F]."""
    spectrum = torch.view_as_real(torch.fft.rfft(frames, n=FFT_SIZE))  # [R, F, bins, 2]
    # |X|^2 summed over a band's bins as one product (faster than a sum over the last dimension of 2): real
    # and imaginary parts interleaved, so each bin's column of the band matrix twice
    power = spectrum.square().flatten(-2) @ bands[..., None].expand(-1, -1, 2).flatten(-2).T
    # sqrt with a zero (not infinite) derivative at a band without energy
    return power.clamp(min=torch.finfo(power.dtype).tiny).sqrt().transpose(1, 2)


def unit(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x with its mean over ``dim`` removed and scaled to unit norm (0 where x is constant along ``dim``)."""
    x = x - x.mean(dim=dim, keepdim=True)
    norm: torch.Tensor = torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    return x / (norm + EPS)


def stoi_correlations(clean: torch.Tensor, processed: torch.Tensor, beta: float) -> torch.Tensor:
    """Per segment and band [R, BANDS, S], the correlation of the clean envelope with the processed one,
    scaled to the clean energy and clipped at a signal-to-distortion ratio of ``beta`` dB (Taal et al.)."""
    scale = torch.linalg.vector_norm(clean, dim=-1, keepdim=True) / (
        torch.linalg.vector_norm(processed, dim=-1, keepdim=True) + EPS
    )
    clipped = torch.minimum(processed * scale, clean * (1 + 10 ** (-beta / 20)))
    return (unit(clipped, -1) * unit(clean, -1)).sum(dim=-1)


def estoi_correlations(clean: torch.Tensor, processed: torch.Tensor) -> torch.Tensor:
    """Per segment and frame [R, S, SEGMENT], the correlation of the clean and processed spectral vectors
    (over bands), after each band was normalised over the segment's frames (Jensen & Taal 2016, eq. 5-7)."""
    a, b = (unit(unit(x, -1), 1) for x in (clean, processed))
    return (a * b).sum(dim=1)


def intelligibility(
    clean: torch.Tensor,
    processed: torch.Tensor,
    *,
    extended: bool,
    dyn_range: float = 40.0,
    beta: float = -15.0,
    window: torch.Tensor | None = None,
    bands: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """STOI (or ESTOI when ``extended``) of [R, N] signals at 10 kHz, one score per row, [R], in ``dtype``.

    The signals' own dtype is used up to the band envelopes (pass them in wide_dtype() to equal the
    reference on band-limited signals); the segment statistics run in ``dtype`` (default: the signals').
    A row left with fewer than SEGMENT + 1 analysis frames after silence removal scores 1e-5, as in the
    reference; a row holding a NaN or an infinity in either signal scores NaN. The caller checks that N
    allows at least MIN_FRAMES frames. ``bands`` (third_octave_matrix()) may be passed already on the
    signals' device, to copy nothing from the host per call; ``window`` (frame_window()) is made on the
    device when not passed. Pass both in the signals' dtype or wider: a rounded window is a rounding of
    every sample.
    """
    window = (frame_window(clean.device, clean.dtype) if window is None else window).to(clean)
    bands = (third_octave_matrix() if bands is None else bands).to(clean)
    clean_kept, processed_kept, kept = kept_frames(clean, processed, window, dyn_range)
    x, y = (envelopes(reframed(f, window), bands).to(dtype or clean.dtype) for f in (clean_kept, processed_kept))
    x, y = x.unfold(-1, SEGMENT, 1), y.unfold(-1, SEGMENT, 1)  # [R, BANDS, S, SEGMENT]
    if extended:
        per_segment = estoi_correlations(x, y).sum(dim=-1) / SEGMENT
    else:
        per_segment = stoi_correlations(x, y, beta).sum(dim=1) / BANDS
    segments = kept - SEGMENT  # the reference's segments: (kept - 1) frames, windows of SEGMENT
    counted = torch.arange(per_segment.shape[-1], device=clean.device) < segments[:, None]
    score = (per_segment * counted).sum(dim=-1) / segments.clamp(min=1)
    score = torch.where(segments > 0, score, torch.full_like(score, 1e-5))
    return torch.where(finite_rows(clean, processed), score, torch.full_like(score, math.nan))


def finite_rows(*signals: torch.Tensor) -> torch.Tensor:
    """Whether every sample of each row (the last dimension) of every signal is finite, [...] (a tensor)."""
    finite = torch.isfinite(signals[0]).all(dim=-1)
    for s in signals[1:]:
        finite = finite & torch.isfinite(s).all(dim=-1)
    return finite
