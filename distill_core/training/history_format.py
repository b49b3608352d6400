"""The history file's format, and reading every format ever written into a ``MetricsHistory``.

On disk (format 2) the seed's keys come first, ``step_metrics`` and ``epoch_metrics`` holding exactly the
seed's fields, so the seed's own ``MetricsHistory.from_dict`` reads our files. What the seed has no field
for (every term's value, weights, balancer figures, non-finite counts, segments) sits beside them under
``distill``, one entry per step and per epoch. Reading accepts, besides that:

- the seed's files, before and after its per-term fields (``step_metrics``/``epoch_metrics`` only);
- this project's earlier files (``steps``/``epochs``, with or without ``components``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from distill_core.config.converter import converter, problems_from
from distill_core.seed.metrics import NAMED_FIELDS, EpochMetrics, StepMetrics

if TYPE_CHECKING:  # pragma: no cover
    from distill_core.training.metrics import MetricsHistory  # the reader is given the class: metrics imports this

__all__ = ["FORMAT", "HistoryError", "SEED_STEP_FIELDS", "SEED_EPOCH_FIELDS", "EXTRA_FIELDS", "read_history"]

FORMAT = 2


class HistoryError(ValueError):
    """A history file is missing, truncated or corrupt; the message names the file and the position."""


def _records(cls: type) -> list[tuple[str, str, bool]]:
    """(name, annotation, required) of each field of a metrics record, a dataclass (as the seed's) or attrs."""
    if dataclasses.is_dataclass(cls):
        return [
            (f.name, str(f.type), f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls)
        ]
    return [(a.name, str(a.type), a.default is attrs.NOTHING) for a in attrs.fields(cls)]


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(name for name, _, _ in _records(cls))


# The seed's record of each: what its reader accepts, in its order.
SEED_STEP_FIELDS = _fields(StepMetrics)[:12]
SEED_EPOCH_FIELDS = _fields(EpochMetrics)[:14]
EXTRA_FIELDS = {StepMetrics: _fields(StepMetrics)[12:], EpochMetrics: _fields(EpochMetrics)[14:]}
_REQUIRED = {cls: tuple(name for name, _, required in _records(cls) if required) for cls in (StepMetrics, EpochMetrics)}
# Built-in per-term fields, by the component key they stand for (files older than ``components`` for all).
_NAMED = NAMED_FIELDS
_TOP_LEVEL = ("format", "step_metrics", "epoch_metrics", "distill", "steps", "epochs")


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
_TABLES = {cls: tuple(name for name, kind, _ in _records(cls) if kind.startswith("dict")) for cls in _EXTRA_KEY}


def _check_tables(entry: Mapping[str, Any], cls: type, seed_path: str, extra_path: str, source: str) -> None:
    """Each name -> number table of an entry (components, weights, ...) is an object, named where it is written."""
    for field in _TABLES[cls]:
        value = entry.get(field)
        if value is not None and not isinstance(value, Mapping):
            where = extra_path if field in EXTRA_FIELDS[cls] else seed_path
            raise HistoryError(
                f"{source}: {where}.{field}: expected an object of names to numbers "
                f'(e.g. {{"stft_loss": 0.5}}), got {type(value).__name__}'
            )


def read_history(data: Mapping[str, Any], source: str, history_class: type[MetricsHistory]) -> MetricsHistory:
    """A history of ``history_class`` from a mapping in any format; HistoryError names what is wrong and where."""
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
        history = converter.structure(cleaned, history_class)
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
