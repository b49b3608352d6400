"""Speech quality and intelligibility for ``compare``, by the implementations the field scores with: PESQ
(ITU-T P.862 narrow band, P.862.2 wide band; the ``pesq`` package) and STOI / ESTOI (``pystoi``).

Each is offered only when its package is installed (``pip install 'distill-core[metrics]'``). Like
audio_metrics, every function takes [B, N] reference and estimate tensors at one sample rate and returns
one value per clip, [B]; a clip the package cannot score is NaN (shown as n/a, left out of the means).
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch

from distill_core.training.audio import resample

Metric = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
PESQ_RATES = {"wb": 16_000, "nb": 8_000}  # P.862.2 is defined at 16 kHz, P.862 at 8 kHz


def _rows(x: torch.Tensor) -> list[np.ndarray]:
    return [row.double().numpy() for row in x.detach().cpu()]


def pesq(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int, mode: str) -> torch.Tensor:
    """PESQ MOS-LQO (higher is better, about 1 to 4.6): ``mode`` "wb" scores the clips at 16 kHz (P.862.2),
    "nb" at 8 kHz (P.862), resampled there from ``sample_rate``. NaN for clips at a lower rate (no band to
    score), shorter than a quarter second, or in which the package finds no speech."""
    import pesq as pesq_package

    rate = PESQ_RATES[mode]
    if sample_rate < rate:
        return torch.full((reference.shape[0],), math.nan, dtype=torch.float64)
    scores = []
    for r, e in zip(_rows(reference), _rows(estimate)):
        r, e = (resample(torch.from_numpy(s), sample_rate, rate).double().numpy() for s in (r, e))
        try:
            scores.append(pesq_package.pesq(rate, r, e, mode))
        except (pesq_package.PesqError, ValueError):  # ValueError: pesq 0.0.4 on a silent estimate
            scores.append(math.nan)
    return torch.tensor(scores, dtype=torch.float64)


def stoi(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int, extended: bool = False) -> torch.Tensor:
    """STOI (Taal et al. 2011) or, when ``extended``, ESTOI (Jensen & Taal 2016), higher is better, via
    pystoi at ``sample_rate`` (it resamples to 10 kHz). NaN where fewer than 30 frames remain after pystoi
    removes the reference's silent frames (pystoi returns 1e-5 there, with a warning)."""
    from pystoi import stoi as pystoi_score

    scores = []
    for r, e in zip(_rows(reference), _rows(estimate)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            value = pystoi_score(r, e, sample_rate, extended=extended)
        scores.append(math.nan if any("Not enough STFT frames" in str(w.message) for w in caught) else value)
    return torch.tensor(scores, dtype=torch.float64)


def installed() -> dict[str, tuple[Metric, bool]]:
    """The speech metrics whose packages are installed, as audio_metrics.METRICS entries (all higher-better)."""
    found: dict[str, tuple[Metric, bool]] = {}
    if importlib.util.find_spec("pesq") is not None:
        found["PESQ WB"] = (lambda r, e, sr: pesq(r, e, sr, "wb"), True)
        found["PESQ NB"] = (lambda r, e, sr: pesq(r, e, sr, "nb"), True)
    if importlib.util.find_spec("pystoi") is not None:
        found["STOI"] = (lambda r, e, sr: stoi(r, e, sr), True)
        found["ESTOI"] = (lambda r, e, sr: stoi(r, e, sr, extended=True), True)
    return found
