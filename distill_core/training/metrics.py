"""Per-step and per-epoch metrics, and a history that saves atomically and loads every format ever written.

On disk (format 2) the seed's keys come first, ``step_metrics`` and ``epoch_metrics`` holding exactly the
seed's fields, so the seed's own ``MetricsHistory.from_dict`` reads our files. What the seed has no field
for (every term's value, weights, balancer figures, non-finite counts, segments) sits beside them under
``distill``, one entry per step and per epoch. Reading accepts, besides that:

- the seed's files, before and after its per-term fields (``step_metrics``/``epoch_metrics`` only);
- this project's earlier files (``steps``/``epochs``, with or without ``components``).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from distill_core.config.converter import converter, problems_from
from distill_core.files.atomic import atomic_write_text
from distill_core.seed.metrics import (
    NAMED_FIELDS,
    NAMED_TERMS,
    EpochMetrics,
    StepMetrics,
    overfitting_gap,
    step_fields,
    term_values,
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

FORMAT = 2


class HistoryError(ValueError):
    """A history file is missing, truncated or corrupt; the message names the file and the position."""


@attrs.define
class Segment:
    """A stretch of a run trained under one loss config; best-checkpoint tracking restarts at each."""

    start_epoch: int
    reason: str


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(a.name for a in attrs.fields(cls))


# The seed's record of each: what its reader accepts, in its order.
SEED_STEP_FIELDS = _fields(StepMetrics)[:12]
SEED_EPOCH_FIELDS = _fields(EpochMetrics)[:14]
_EXTRA = {StepMetrics: _fields(StepMetrics)[12:], EpochMetrics: _fields(EpochMetrics)[14:]}
_REQUIRED = {
    cls: tuple(a.name for a in attrs.fields(cls) if a.default is attrs.NOTHING) for cls in (StepMetrics, EpochMetrics)
}
# Built-in per-term fields, by the component key they stand for (files older than ``components`` for all).
_NAMED = NAMED_FIELDS
_TOP_LEVEL = ("format", "step_metrics", "epoch_metrics", "distill", "steps", "epochs")


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
            return ([{k: d[k] for k in seed_fields} for d in plain], [{k: d[k] for k in _EXTRA[cls]} for d in plain])

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
        """Load any format (see the module docstring). Unknown keys are kept out with one warning naming
        them; a mapping with none of the known lists is a HistoryError."""
        return _read(data, source)

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


# --- reading every format -------------------------------------------------------------------------------


def _entries(data: Mapping[str, Any], seed_key: str, own_key: str, source: str) -> tuple[str, list[Any]]:
    if seed_key in data and own_key in data:
        raise HistoryError(f"{source}: has both {seed_key!r} and {own_key!r}; expected one list of entries")
    key = seed_key if seed_key in data else own_key
    items = data.get(key, [])
    if not isinstance(items, list):
        raise HistoryError(f"{source}: {key!r} must be a list, got {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise HistoryError(f"{source}: {key}[{i}] must be an object, got {type(item).__name__}")
    return key, items


def _merge_extras(key: str, items: list[Any], extras: Any, source: str) -> list[dict[str, Any]]:
    if extras is None:
        return [dict(item) for item in items]
    if not isinstance(extras, list) or len(extras) != len(items) or not all(isinstance(x, Mapping) for x in extras):
        raise HistoryError(
            f"{source}: distill.{'steps' if key == 'step_metrics' else 'epochs'} must be a list "
            f"of {len(items)} objects, one per {key} entry"
        )
    return [{**item, **extra} for item, extra in zip(items, extras)]


def _with_components(entries: list[dict[str, Any]], cls: type, component_key: str) -> None:
    """Files older than format 2 name the recipe's terms only in their own fields: add those to the
    components where the file ever recorded a value for them (a zero throughout means not configured)."""
    for field, key in reversed(_NAMED[cls].items()):  # prepended: the recipe's order comes out first
        if any(e.get(field) not in (None, 0, 0.0) for e in entries):
            for e in entries:
                if field in e:
                    e.setdefault(component_key, {})
                    if isinstance(e[component_key], dict):
                        e[component_key] = {key: e[field], **e[component_key]}


_EXTRA_KEY = {StepMetrics: "steps", EpochMetrics: "epochs"}  # where a format-2 file keeps each one's extras
_TABLES = {cls: tuple(a.name for a in attrs.fields(cls) if str(a.type).startswith("dict")) for cls in _EXTRA_KEY}


def _check_tables(entry: Mapping[str, Any], cls: type, seed_path: str, extra_path: str, source: str) -> None:
    """Each name -> number table of an entry (components, weights, ...) is an object, named where it is written."""
    for field in _TABLES[cls]:
        value = entry.get(field)
        if value is not None and not isinstance(value, Mapping):
            where = extra_path if field in _EXTRA[cls] else seed_path
            raise HistoryError(
                f"{source}: {where}.{field}: expected an object of names to numbers "
                f'(e.g. {{"stft_loss": 0.5}}), got {type(value).__name__}'
            )


def _read(data: Mapping[str, Any], source: str) -> MetricsHistory:
    lists = ("step_metrics", "epoch_metrics", "steps", "epochs")
    if not any(k in data for k in lists):
        raise HistoryError(
            f"{source}: not a training history: expected 'step_metrics' and 'epoch_metrics' "
            f"(or 'steps' and 'epochs'), found keys: {', '.join(map(str, data)) or 'none'}"
        )
    unknown = [f"{k!r}" for k in data if k not in _TOP_LEVEL]
    version = data.get("format", 1)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT:
        warnings.warn(
            f"{source}: written by a newer version (format {version}); reading what this version knows", stacklevel=3
        )
    extras = data.get("distill", {})
    if not isinstance(extras, Mapping):
        raise HistoryError(f"{source}: 'distill' must be an object, got {type(extras).__name__}")
    step_key, steps = _entries(data, "step_metrics", "steps", source)
    epoch_key, epochs = _entries(data, "epoch_metrics", "epochs", source)
    step_entries = _merge_extras(step_key, steps, extras.get("steps"), source)
    epoch_entries = _merge_extras(epoch_key, epochs, extras.get("epochs"), source)
    if "distill" not in data:
        _with_components(step_entries, StepMetrics, "components")
        _with_components(epoch_entries, EpochMetrics, "val_components")

    ignored: set[str] = set()
    cleaned: dict[str, list[dict[str, Any]]] = {}
    for key, entries, item_cls in ((step_key, step_entries, StepMetrics), (epoch_key, epoch_entries, EpochMetrics)):
        known = set(_fields(item_cls))
        for i, entry in enumerate(entries):
            missing = [f for f in _REQUIRED[item_cls] if f not in entry]
            if missing:
                raise HistoryError(
                    f"{source}: {key}[{i}].{missing[0]}: missing (expected a number; every entry "
                    f"has {', '.join(_REQUIRED[item_cls])})"
                )
            _check_tables(
                entry,
                item_cls,
                f"{key}[{i}]",
                f"distill.{_EXTRA_KEY[item_cls]}[{i}]"
                if extras.get(_EXTRA_KEY[item_cls]) is not None
                else f"{key}[{i}]",
                source,
            )
            ignored |= {f"{key}.{k}" for k in entry if k not in known}
        cleaned["step_metrics" if item_cls is StepMetrics else "epoch_metrics"] = [
            {k: v for k, v in entry.items() if k in known} for entry in entries
        ]
    cleaned["segments"] = extras.get("segments", [])
    if ignored or unknown:
        what = sorted(ignored) + [f"top-level key {k}" for k in unknown]
        warnings.warn(f"{source}: ignoring what this version does not know: {', '.join(what)}", stacklevel=3)
    try:
        history = converter.structure(cleaned, MetricsHistory)
    except Exception as exc:
        where = "; ".join(f"{p}: {r}" for p, r in problems_from(exc, ""))
        raise HistoryError(f"{source}: invalid history: {where}") from None
    _check_epoch_order(history.epoch_metrics, epoch_key, source)
    return history


def _check_epoch_order(epochs: Sequence[EpochMetrics], key: str, source: str) -> None:
    """Refuse a history whose epochs repeat or go back: every reader (best epoch, curves, resume) assumes
    each epoch once, in training order."""
    seen: dict[int, int] = {}
    for i, metrics in enumerate(epochs):
        if metrics.epoch in seen:
            raise HistoryError(
                f"{source}: {key}[{i}].epoch: epoch {metrics.epoch} is already {key}"
                f"[{seen[metrics.epoch]}]; expected each epoch once"
            )
        if i and metrics.epoch < epochs[i - 1].epoch:
            raise HistoryError(
                f"{source}: {key}[{i}].epoch: epoch {metrics.epoch} comes after epoch "
                f"{epochs[i - 1].epoch}; expected epochs in increasing order"
            )
        seen[metrics.epoch] = i
