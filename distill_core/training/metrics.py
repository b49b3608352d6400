"""Per-step and per-epoch metrics, and a history that saves atomically and loads old files."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import attrs

from ..atomic import atomic_write_text
from ..config import converter


class HistoryError(ValueError):
    """A history file is missing, truncated or corrupt; the message names the file and the position."""


@attrs.define
class StepMetrics:
    """One logged training step (values averaged over the steps since the previous log)."""

    epoch: int
    step: int
    total_steps: int
    train_loss: float
    recon_loss: float
    kl_loss: float
    kl_weight: float
    learning_rate: float
    step_time_s: float
    stft_loss: float = 0.0
    mag_recon_loss: float = 0.0
    if_recon_loss: float = 0.0
    components: dict[str, float] = attrs.Factory(dict)
    nonfinite_steps: int = 0


@attrs.define
class EpochMetrics:
    """One finished epoch: train and validation losses, per term, and timing."""

    epoch: int
    total_epochs: int
    train_loss: float
    val_loss: float
    val_recon_loss: float
    val_kl_loss: float
    kl_divergence: float
    overfitting_gap: float
    learning_rate: float
    eta_seconds: float
    elapsed_seconds: float
    val_stft_loss: float = 0.0
    val_mag_recon_loss: float = 0.0
    val_if_recon_loss: float = 0.0
    val_components: dict[str, float] = attrs.Factory(dict)
    nonfinite_steps: int = 0


_KNOWN = {cls: {a.name for a in attrs.fields(cls)} for cls in (StepMetrics, EpochMetrics)}


@attrs.define
class Segment:
    """Where a run's best-tracking restarts: from ``start_epoch`` on, under a changed loss (``reason``)."""

    start_epoch: int
    reason: str


@attrs.define
class MetricsHistory:
    """Every logged step and epoch of a run; JSON on disk through the one converter."""

    steps: list[StepMetrics] = attrs.Factory(list)
    epochs: list[EpochMetrics] = attrs.Factory(list)
    segments: list[Segment] = attrs.Factory(list)

    def start_segment(self, start_epoch: int, reason: str) -> None:
        """Record that epochs from ``start_epoch`` on are compared (for best.pt) only with each other."""
        self.segments.append(Segment(start_epoch, reason))

    def add_step(self, metrics: StepMetrics) -> None:
        self.steps.append(metrics)

    def add_epoch(self, metrics: EpochMetrics) -> None:
        self.epochs.append(metrics)

    def get_loss_curves(self) -> dict[str, list[float]]:
        """One curve per epoch-level quantity, including one per loss term (plugin terms too)."""
        curves: dict[str, list[float]] = {k: [] for k in (
            "train_loss", "val_loss", "val_recon_loss", "val_kl_loss", "kl_divergence",
            "val_stft_loss", "val_mag_recon_loss", "val_if_recon_loss")}
        extra = sorted({k for e in self.epochs for k in e.val_components})
        for key in extra:
            curves[f"val_{key}"] = []
        for e in self.epochs:
            for key in list(curves)[:8]:
                curves[key].append(getattr(e, key))
            for key in extra:
                curves[f"val_{key}"].append(e.val_components.get(key, float("nan")))
        return curves

    def get_best_epoch(self) -> EpochMetrics | None:
        """The epoch with the lowest validation loss, or None before the first epoch."""
        return min(self.epochs, key=lambda e: e.val_loss) if self.epochs else None

    def to_dict(self) -> dict[str, Any]:
        return converter.unstructure(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "history") -> "MetricsHistory":
        """Load any version: missing per-term fields default to 0.0; unknown fields are ignored with one warning."""
        unknown: set[str] = set()
        cleaned: dict[str, list[dict[str, Any]]] = {}
        for key, item_cls in (("steps", StepMetrics), ("epochs", EpochMetrics)):
            items = data.get(key, [])
            if not isinstance(items, list):
                raise HistoryError(f"{source}: {key!r} must be a list, got {type(items).__name__}")
            cleaned[key] = []
            for item in items:
                if not isinstance(item, Mapping):
                    raise HistoryError(f"{source}: {key} entries must be objects, got {type(item).__name__}")
                unknown |= {f"{key}.{k}" for k in item if k not in _KNOWN[item_cls]}
                cleaned[key].append({k: v for k, v in item.items() if k in _KNOWN[item_cls]})
        if unknown:
            warnings.warn(f"{source}: ignoring fields from a newer version: {', '.join(sorted(unknown))}",
                          stacklevel=2)
        try:
            return converter.structure(cleaned, cls)
        except Exception as exc:
            from ..config import problems_from

            where = "; ".join(f"{p}: {r}" for p, r in problems_from(exc, ""))
            raise HistoryError(f"{source}: invalid history: {where}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically: a crash mid-save leaves the previous file intact."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MetricsHistory":
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise HistoryError(f"{p}: no such history file") from None
        except UnicodeDecodeError as exc:
            raise HistoryError(f"{p}: not UTF-8 at byte {exc.start}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"{p}: truncated or corrupt JSON at line {exc.lineno}, column {exc.colno} "
                               f"(char {exc.pos}): {exc.msg}") from None
        if not isinstance(data, Mapping):
            raise HistoryError(f"{p}: expected a JSON object with 'steps' and 'epochs'")
        return cls.from_dict(data, str(p))


NAMED_TERMS = ("stft_loss", "mag_recon_loss", "if_recon_loss")
RECIPE_KEYS = ("total_loss", "recon_loss", "kl_loss")


def split_components(values: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(the recipe's named per-term losses, every other ``<term>_loss``): the latter go in ``components``."""
    named = {k: v for k, v in values.items() if k in NAMED_TERMS}
    other = {k: v for k, v in values.items() if k.endswith("_loss") and k not in NAMED_TERMS and k not in RECIPE_KEYS}
    return named, other


def step_fields(values: Mapping[str, float]) -> dict[str, Any]:
    """StepMetrics' per-term keyword arguments from a step's averaged loss values."""
    named, other = split_components(values)
    return {**named, "components": other}
