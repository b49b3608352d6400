"""Mel filterbanks numerically equal to librosa.filters.mel, without librosa (shared by the spectral and mel plugins
and the demo spectrogram)."""

from __future__ import annotations

from typing import Union

import numpy as np

MelNorm = Union[str, float, None]  # noqa: UP007 - an alias evaluated at import, on Python 3.10 too
"""``"slaney"`` (area-normalised triangles), ``None`` (peak 1), or a number p: each filter scaled to unit
p-norm as librosa.util.normalize does (``inf``: max, ``-inf``: min, ``0``: count of non-zeros)."""

_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Slaney's mel scale (linear below 1 kHz, logarithmic above), or the HTK formula when ``htk``."""
    hz = np.asarray(hz, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    mel = hz / _F_SP
    log_region = hz >= _MIN_LOG_HZ
    return np.where(log_region, _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, mel)


def mel_to_hz(mel: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """The inverse of :func:`hz_to_mel` for the same scale."""
    mel = np.asarray(mel, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    hz = _F_SP * mel
    return np.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)), hz)


def _normalise_rows(weights: np.ndarray, p: float) -> np.ndarray:
    """Each row divided by its p-norm (rows whose norm is below the float32 tiny are left as they are)."""
    mag = np.abs(weights).astype(np.float64)
    if p == np.inf:
        length = mag.max(axis=1, keepdims=True)
    elif p == -np.inf:
        length = mag.min(axis=1, keepdims=True)
    elif p == 0:
        length = (mag > 0).sum(axis=1, keepdims=True).astype(weights.dtype)
    else:
        length = (mag**p).sum(axis=1, keepdims=True) ** (1.0 / p)
    length = np.where(length < np.finfo(weights.dtype).tiny, 1.0, length)
    return weights / length


def mel_filterbank(
    sample_rate: float,
    n_fft: int,
    n_mels: int,
    *,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: MelNorm = "slaney",
) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32 triangular filters over the bins k * sample_rate / n_fft.

    The options and defaults are librosa.filters.mel's: ``fmin`` 0, ``fmax`` sample_rate / 2 (``None``),
    Slaney's mel scale unless ``htk``, and ``norm`` (see :data:`MelNorm`).
    """
    if fmax is None:
        fmax = sample_rate / 2.0
    if norm != "slaney" and norm is not None and (isinstance(norm, str) or not (norm >= 0 or norm == -np.inf)):
        raise ValueError(f"mel_filterbank: norm={norm!r}; expected 'slaney', None, a number p >= 0 (p-norm) or +-inf")
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)  # bin k at k * sample_rate / n_fft, odd n_fft too
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]
    elif norm is not None:
        weights = _normalise_rows(weights.astype(np.float32), float(norm))
    return weights.astype(np.float32)
