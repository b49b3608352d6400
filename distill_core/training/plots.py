"""losses.png: train and val of every configured term on one axis each, the weight schedules in their own
panel, the loss's update-step figures (a discriminator's loss and scores) in theirs, a log axis where a
panel's positive values span decades (symlog where some are negative, and always in the update panel: scores
take any sign), and several runs overlaid (``distill-loss plot``); and spectrograms.png, one held-out clip's
spectrogram per run beside the original (``spectrogram_figure``)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from distill_core.files.atomic import atomic_write_bytes
from distill_core.training.metrics import EpochMetrics, MetricsHistory
from distill_core.util.extras import require

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

NAMED = ("stft_loss", "mag_recon_loss", "if_recon_loss", "kl_loss")
DECADES_FOR_LOG = 2.0  # a panel whose magnitudes span 100x or more gets a log (or symlog) axis
UPDATE_PANEL = "update step (train)"  # the stateful terms' own figures: nothing updates in validation


def _mapping(epoch: EpochMetrics, name: str) -> Mapping[str, float]:
    return getattr(epoch, name, None) or {}


def _val(epoch: EpochMetrics, term: str) -> float:
    values = _mapping(epoch, "val_components")
    if term in values:
        return values[term]
    return getattr(epoch, f"val_{term}", math.nan)


def term_curves(history: MetricsHistory) -> dict[str, tuple[list[float], list[float]]]:
    """term key (e.g. ``stft_loss``) -> (train per epoch, val per epoch); NaN where a value was not logged.

    The terms are those the history logged: every key of ``components``/``val_components``, and the
    recipe's named terms where their validation value is not zero (older histories log only those)."""
    epochs = history.epochs
    keys: list[str] = []
    for e in epochs:
        for k in [*_mapping(e, "components"), *_mapping(e, "val_components")]:
            if k not in keys:
                keys.append(k)
    for k in NAMED:  # NaN: a run that never measured it (a vocoder's history)
        if k not in keys and any(_logged(getattr(e, f"val_{k}", None)) for e in epochs):
            keys.append(k)
    return {
        k: ([_mapping(e, "components").get(k, math.nan) for e in epochs], [_val(e, k) for e in epochs]) for k in keys
    }


def schedule_curves(history: MetricsHistory) -> dict[str, list[float]]:
    """Each weight (``weights``) and balancer ratio (``balancer`` keys ``ratio_*``) per epoch; for histories
    without them, the KL weight the steps logged (its value at each epoch's last logged step)."""
    epochs = history.epochs
    keys: list[str] = []
    for e in epochs:
        keys += [f"weight {k}" for k in _mapping(e, "weights") if f"weight {k}" not in keys]
        keys += [
            f"balancer {k}" for k in _mapping(e, "balancer") if k.startswith("ratio") and f"balancer {k}" not in keys
        ]
    if keys:

        def value(e: EpochMetrics, key: str) -> float:
            kind, _, name = key.partition(" ")
            return _mapping(e, "weights" if kind == "weight" else "balancer").get(name, math.nan)

        return {k: [value(e, k) for e in epochs] for k in keys}
    last_kl = {s.epoch: s.kl_weight for s in history.steps}
    if last_kl and any(v != 0 for v in last_kl.values()):
        return {"weight kl": [last_kl.get(e.epoch, math.nan) for e in epochs]}
    return {}


def metric_curves(history: MetricsHistory) -> dict[str, list[float]]:
    """Each figure of the loss's update step (``metrics``: ``<term>_<figure>``) per epoch; NaN where an epoch
    lacks it (histories written before it was logged have none)."""
    keys: list[str] = []
    for e in history.epochs:
        keys += [k for k in _mapping(e, "metrics") if k not in keys]
    return {k: [_mapping(e, "metrics").get(k, math.nan) for e in history.epochs] for k in keys}


def _logged(value: float | None) -> bool:
    """A seed field's value that says the term was there: not None, not 0.0 (not configured), not NaN."""
    return value is not None and math.isfinite(value) and value != 0.0


def _spans_decades(values: list[float]) -> bool:
    sizes = [abs(v) for v in values if math.isfinite(v) and v != 0]
    return bool(sizes) and math.log10(max(sizes) / min(sizes)) >= DECADES_FOR_LOG


def axis_scale(title: str, values: list[float]) -> tuple[str, dict[str, float]]:
    """A panel's y scale and its arguments: linear, unless the values span decades; then log where all are
    positive, else symlog (linear within the smallest magnitude's decade, so a negative value stays on the
    axis). The update step's panel never gets a log axis: its scores (a discriminator's logits) take any sign."""
    finite = [v for v in values if math.isfinite(v)]
    if not _spans_decades(finite):
        return "linear", {}
    if title != UPDATE_PANEL and min(finite) > 0:
        return "log", {}
    smallest = min(abs(v) for v in finite if v != 0)
    return "symlog", {"linthresh": 10.0 ** math.floor(math.log10(smallest))}


def draw(histories: Mapping[str, MetricsHistory]) -> Figure:
    """One or several runs (label -> history) in one figure: total, a panel per term, schedules."""

    require("matplotlib", "plotting losses")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[tuple[str, int, str, list[int], list[float]]]] = {"total": []}
    for i, (label, history) in enumerate(histories.items()):
        x = [e.epoch + 1 for e in history.epochs]
        panels["total"] += [
            (label, i, "train", x, [e.train_loss for e in history.epochs]),
            (label, i, "val", x, [e.val_loss for e in history.epochs]),
        ]
        for term, (train, val) in term_curves(history).items():
            panels.setdefault(term, [])
            if any(math.isfinite(v) for v in train):
                panels[term].append((label, i, "train", x, train))
            panels[term].append((label, i, "val", x, val))
        for name, values in schedule_curves(history).items():
            panels.setdefault("weights and schedules", []).append((label, i, name, x, values))
        for name, values in metric_curves(history).items():
            panels.setdefault(UPDATE_PANEL, []).append((label, i, name, x, values))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    several = len(histories) > 1
    for ax, (title, curves) in zip(axes.flat, panels.items()):
        schedules = title in ("weights and schedules", UPDATE_PANEL)  # several named curves of one run
        kinds = list(dict.fromkeys(kind for _, _, kind, _, _ in curves))
        for n, (label, run, kind, x, y) in enumerate(curves):
            style = {"train": "-", "val": "--"}.get(kind, "-")
            color = f"C{run}" if several or not schedules else f"C{n}"
            marker = "osv^D*"[kinds.index(kind) % 6] if schedules else "o"  # tells schedules of one run apart
            name = f"{label} {kind}" if several else kind
            ax.plot(x, y, style, marker=marker, markersize=3, color=color, label=name)
        scale, options = axis_scale(title, [v for *_, y in curves for v in y])
        ax.set_yscale(scale, **options)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.remove()
    fig.tight_layout()
    return fig


def plot_runs(histories: Mapping[str, MetricsHistory], path: str | os.PathLike) -> Path:
    """Draw one or several runs into a PNG, written atomically."""
    import matplotlib.pyplot as plt

    fig = draw(histories)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_losses(history: MetricsHistory, path: str | os.PathLike) -> Path:
    """A run's losses.png."""
    return plot_runs({"run": history}, path)


def _log_spectrogram(wave: torch.Tensor, n_fft: int, hop: int) -> np.ndarray:
    window = torch.hann_window(n_fft, dtype=torch.float32)
    spec = torch.stft(wave.float().reshape(-1), n_fft, hop, window=window, return_complex=True).abs()
    return (20 * torch.log10(spec.clamp(min=1e-5))).numpy()


def spectrogram_figure(
    original: torch.Tensor,
    reconstructions: Mapping[str, torch.Tensor],
    sample_rate: int,
    path: str | Path,
    title: str = "",
    n_fft: int = 1024,
    hop: int = 256,
) -> Path:
    """A PNG of stacked log-magnitude spectrograms: the original clip first, then each run's reconstruction
    of it, on one colour scale (the original's top 80 dB)."""
    require("matplotlib", "the spectrogram figure", "train")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"original": original, **reconstructions}
    images = {label: _log_spectrogram(w, n_fft, hop) for label, w in panels.items()}
    top = float(images["original"].max())
    seconds = original.shape[-1] / sample_rate
    fig, axes = plt.subplots(len(images), 1, figsize=(8, 1.9 * len(images)), sharex=True, squeeze=False)
    for ax, (label, image) in zip(axes[:, 0], images.items()):
        shown = ax.imshow(
            image,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 80,
            vmax=top,
            extent=(0, seconds, 0, sample_rate / 2000),
        )
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(shown, ax=axes[:, 0].tolist(), label="dB", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
