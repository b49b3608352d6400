"""Build-time refusals: optional libraries auraloss imports lazily, and filterbanks with empty bands."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterable

import numpy as np


class MissingDependency(ImportError):
    """An option needs a library that is not installed; the message says what to install."""


def require(term: str, option: str, module: str, package: str, extra: str) -> None:
    """Fail when the term is built, not at its first batch, if ``module`` cannot be imported."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{term}: {option} needs {package}, which cannot be imported ({exc}); "
            f"pip install {package}  (or pip install 'distill-auraloss[{extra}]')"
        ) from None


def filterbank(kind: str, sample_rate: float, fft_size: int, bins: int) -> np.ndarray:
    """librosa's mel or chroma filterbank exactly as auraloss requests it."""
    import librosa.filters

    with warnings.catch_warnings():  # librosa warns about empty bands; check_bands reports them instead
        warnings.simplefilter("ignore", UserWarning)
        if kind == "mel":
            return librosa.filters.mel(sr=sample_rate, n_fft=fft_size, n_mels=bins)
        return librosa.filters.chroma(sr=sample_rate, n_fft=fft_size, n_chroma=bins)


def check_bands(term: str, kind: str, sample_rate: float, fft_sizes: Iterable[int], bins: int, bins_field: str) -> None:
    """Refuse a filterbank with an all-zero band: auraloss would take log(0) there and return NaN."""
    for fft in sorted(set(fft_sizes)):
        empty = int((filterbank(kind, sample_rate, fft, bins).sum(axis=1) == 0).sum())
        if empty:
            raise ValueError(
                f"{term}: {bins_field} = {bins} at sample_rate = {sample_rate:g} leaves {empty} of {bins} {kind} "
                f"bands without any FFT bin at fft size {fft}; their log magnitude is log(0) and the loss NaN; "
                f"expected a smaller {bins_field} or a larger fft size"
            )
