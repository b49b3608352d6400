"""Per-step and per-epoch metrics, and a run's history: kept in memory, saved atomically, loaded from a file.

The history file's format, and reading every format ever written, is ``history_format``'s; its names stay
importable from here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from distill_core.config.converter import converter
from distill_core.files.atomic import atomic_write_text
from distill_core.seed.metrics import NAMED_TERMS, EpochMetrics, StepMetrics, overfitting_gap, step_fields, term_values
from distill_core.training.history_format import (
    EXTRA_FIELDS,
    FORMAT,
    SEED_EPOCH_FIELDS,
    SEED_STEP_FIELDS,
    HistoryError,
    read_history,
)

__all__ = [
    "FORMAT",
    "HistoryError",
    "StepMetrics",
    "EpochMetrics",
    "Segment",
    "MetricsHistory",
    "overfitting_gap",
    "SEED_STEP_FIELDS",
    "SEED_EPOCH_FIELDS",
    "NAMED_TERMS",
    "term_values",
    "step_fields",
]


@attrs.define
class Segment:
    """A stretch of a run trained under one loss config; best-checkpoint tracking restarts at each."""

    start_epoch: int
    reason: str


@attrs.define(init=False)
class MetricsHistory:
    """Every logged step and epoch of a run; JSON on disk that the seed's reader loads too.

    Built as the seed builds it (``step_metrics``, ``epoch_metrics``) or by this project's earlier names
    (``steps``, ``epochs``).
    """

    step_metrics: list[StepMetrics] = attrs.Factory(list)
    epoch_metrics: list[EpochMetrics] = attrs.Factory(list)
    segments: list[Segment] = attrs.Factory(list)

    def __init__(
        self,
        step_metrics: list[StepMetrics] | None = None,
        epoch_metrics: list[EpochMetrics] | None = None,
        segments: list[Segment] | None = None,
        *,
        steps: list[StepMetrics] | None = None,
        epochs: list[EpochMetrics] | None = None,
    ) -> None:
        if (steps is not None and step_metrics is not None) or (epochs is not None and epoch_metrics is not None):
            raise TypeError("MetricsHistory: give step_metrics/epoch_metrics or steps/epochs, not both")
        self.__attrs_init__(
            list(step_metrics if step_metrics is not None else steps or []),
            list(epoch_metrics if epoch_metrics is not None else epochs or []),
            list(segments or []),
        )

    @property
    def steps(self) -> list[StepMetrics]:
        """The logged steps (the same list as ``step_metrics``)."""
        return self.step_metrics

    @property
    def epochs(self) -> list[EpochMetrics]:
        """The finished epochs (the same list as ``epoch_metrics``)."""
        return self.epoch_metrics

    def add_step(self, metrics: StepMetrics) -> None:
        self.step_metrics.append(metrics)

    def add_epoch(self, metrics: EpochMetrics) -> None:
        self.epoch_metrics.append(metrics)

    def start_segment(self, start_epoch: int, reason: str) -> None:
        """Record that from ``start_epoch`` on the run trains under another loss config."""
        self.segments.append(Segment(start_epoch, reason))

    def term_keys(self) -> list[str]:
        """Every term's output key that any epoch recorded, in order of first appearance."""
        keys: dict[str, None] = {}
        for e in self.epoch_metrics:
            keys.update(dict.fromkeys(e.components))
            keys.update(dict.fromkeys(e.val_components))
        return list(keys)

    def get_loss_curves(self) -> dict[str, list[float]]:
        """Curves per epoch: the seed's four (``train_losses``, ``val_losses``, ``recon_losses``,
        ``kl_losses``), ``train_loss``, ``val_loss``, ``kl_divergence``, and ``train_<key>`` / ``val_<key>``
        for every configured term (``val_stft_loss``, ``train_sisdr_loss``, ...); NaN where an epoch lacks one.
        """
        epochs = self.epoch_metrics
        curves: dict[str, list[float]] = {
            "train_losses": [e.train_loss for e in epochs],
            "val_losses": [e.val_loss for e in epochs],
            "recon_losses": [e.val_recon_loss for e in epochs],
            "kl_losses": [e.val_kl_loss for e in epochs],
            "train_loss": [e.train_loss for e in epochs],
            "val_loss": [e.val_loss for e in epochs],
            "kl_divergence": [e.kl_divergence for e in epochs],
        }
        for key in self.term_keys():
            curves[f"train_{key}"] = [e.components.get(key, math.nan) for e in epochs]
            curves[f"val_{key}"] = [e.val_components.get(key, math.nan) for e in epochs]
        return curves

    def best_epoch(self) -> EpochMetrics | None:
        """The epoch with the lowest finite validation loss in the latest segment, or None."""
        start = self.segments[-1].start_epoch if self.segments else -1
        candidates = [e for e in self.epoch_metrics if e.epoch >= start and math.isfinite(e.val_loss)]
        return min(candidates, key=lambda e: e.val_loss) if candidates else None

    def get_best_epoch(self) -> int:
        """The seed's call: the epoch of ``best_epoch()`` (the latest segment's best), 0 before any epoch."""
        best = self.best_epoch()
        return best.epoch if best is not None else 0

    def compute_eta(self, current_epoch: int, total_epochs: int) -> float:
        """The seed's estimate of seconds left: the latest epoch's elapsed time per epoch so far, times epochs left."""
        if not self.epoch_metrics or current_epoch <= 0:
            return 0.0
        per_epoch = self.epoch_metrics[-1].elapsed_seconds / (current_epoch + 1)
        return max(0.0, per_epoch * (total_epochs - current_epoch - 1))

    def is_overfitting(self, threshold: float = 0.2) -> bool:
        """The seed's check: the latest epoch's ``overfitting_gap`` exceeds ``threshold``."""
        return bool(self.epoch_metrics) and self.epoch_metrics[-1].overfitting_gap > threshold

    def to_dict(self) -> dict[str, Any]:
        """The seed's two lists with exactly its fields, and everything else under ``distill``."""

        def split(items: Sequence[Any], cls: type) -> tuple[list[dict], list[dict]]:
            seed_fields = SEED_STEP_FIELDS if cls is StepMetrics else SEED_EPOCH_FIELDS
            plain = [converter.unstructure(m) for m in items]
            return (
                [{k: d[k] for k in seed_fields} for d in plain],
                [{k: d[k] for k in EXTRA_FIELDS[cls]} for d in plain],
            )

        steps, step_extra = split(self.step_metrics, StepMetrics)
        epochs, epoch_extra = split(self.epoch_metrics, EpochMetrics)
        return {
            "format": FORMAT,
            "step_metrics": steps,
            "epoch_metrics": epochs,
            "distill": {"steps": step_extra, "epochs": epoch_extra, "segments": converter.unstructure(self.segments)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "history") -> MetricsHistory:
        """Load any format (see ``history_format``'s docstring). Unknown keys are kept out with one warning naming
        them; a mapping with none of the known lists is a HistoryError."""
        return read_history(data, source, MetricsHistory)

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically: a crash mid-save leaves the previous file intact."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> MetricsHistory:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise HistoryError(f"{p}: no such history file") from None
        except IsADirectoryError:
            raise HistoryError(f"{p}: is a directory, expected a history.json file") from None
        except UnicodeDecodeError as exc:
            raise HistoryError(f"{p}: not UTF-8 at byte {exc.start}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HistoryError(
                f"{p}: truncated or corrupt JSON at line {exc.lineno}, column {exc.colno} (char {exc.pos}): {exc.msg}"
            ) from None
        except ValueError as exc:  # an integer longer than Python converts (sys.get_int_max_str_digits())
            reason = str(exc).split(":")[0].split(";")[0]
            raise HistoryError(
                f"{p}: not a training history: holds a number Python will not read "
                f"({reason}); expected the losses and counts a run writes"
            ) from None
        except RecursionError:
            raise HistoryError(
                f"{p}: not a training history: its arrays or objects are nested deeper than "
                f"Python can read; expected at most a few levels"
            ) from None
        if not isinstance(data, Mapping):
            raise HistoryError(
                f"{p}: expected a JSON object with 'step_metrics' and 'epoch_metrics', got {type(data).__name__}"
            )
        return cls.from_dict(data, str(p))
