"""The LossTerm base class and the batch contract every term checks before computing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from distill_core.terms.layouts import misfit

Batch = Mapping[str, Any]


class BatchError(ValueError):
    """A batch tensor a term reads is missing or has the wrong shape, dtype or device."""


class LossTerm(nn.Module):
    """One loss term: built once from its attrs config, then called per step on a batch.

    Subclasses set ``name`` (identifier; output key ``<name>_loss``), ``config_class`` (an attrs class
    with a ``weight`` field), ``requires`` (the batch keys ``forward`` reads) and optionally ``layouts``
    (each input's layout, e.g. ``{"recon": "B, C, N"}``), and implement
    ``forward(batch)`` returning the unweighted loss as a 0-dim tensor. ``zero_at_identity`` declares
    that the term is exactly 0 when ``recon`` equals ``target``; the test kit checks that promise.

    Permutation-invariant training (``pit = {axis = 1}`` in a term's config section) needs one more method,
    ``per_example(batch) -> [B]``: the loss of each example, whose mean over the batch is ``forward``'s value.
    ``pairwise = True`` further declares the term the mean over the source axis of a per-source loss, so
    that the Hungarian assignment may score each estimate against each reference alone.
    ``shared_inputs`` allows a config to map two of its inputs to one batch key.

    Multi-output terms set ``outputs`` (e.g. ``("main", "aux")``) and return a mapping of each output name to
    a 0-dim tensor from one call; each becomes ``<name>_<output>_loss``, weighted (``output_weights`` gives
    the defaults, a config's ``outputs = {...}`` overrides them), logged and balanced on its own.

    Stateful terms implement ``update(batch) -> {figure: 0-dim tensor}``: their own training step (e.g. of
    modules they own), which a CombinedLoss calls once per training batch on detached inputs, never in eval
    mode. ``figures`` may declare the names it returns, so a config check can refuse key collisions early.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    requires: ClassVar[tuple[str, ...]] = ()
    layouts: ClassVar[Mapping[str, str]] = {}
    zero_at_identity: ClassVar[bool] = False
    pairwise: ClassVar[bool] = False
    shared_inputs: ClassVar[bool] = False  # True: two inputs may read one batch key (otherwise a config error)
    outputs: ClassVar[tuple[str, ...]] = ()  # named components; empty: forward returns one 0-dim tensor
    figures: ClassVar[tuple[str, ...]] = ()  # what update() returns, where declared (logged as <name>_<figure>)

    @classmethod
    def input_layouts(cls, config: Any) -> Mapping[str, str]:
        """The layout of each input this config reads (``{"recon": "B, C, N"}``); the class's ``layouts``
        unless the layout depends on the config. Checked against the batch when a CombinedLoss is built."""
        return cls.layouts

    @classmethod
    def output_weights(cls, config: Any) -> Mapping[str, Any]:
        """Each output's default weight (a number or a schedule) under this config; 1.0 unless overridden."""
        return {output: 1.0 for output in cls.outputs}

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def __call__(self, batch: Batch, *args: Any, **kwargs: Any) -> Any:
        """Check the batch's keys against ``requires`` (BatchError, as through CombinedLoss), then run."""
        if not isinstance(batch, Mapping):
            raise BatchError(
                f"term '{self.name}' expects a batch mapping of its inputs "
                f"({', '.join(self.requires) or 'none'}) to tensors, got {type(batch).__name__}"
            )
        check_missing_keys(self.name, type(self).requires, batch)
        return super().__call__(batch, *args, **kwargs)

    def forward(self, batch: Batch) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def extra_repr(self) -> str:
        return repr(self.config)


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def check_missing_keys(term: str, requires: Sequence[str], batch: Batch) -> None:
    """Fail before any compute when a term's required batch key is absent."""
    missing = [k for k in requires if k not in batch]
    if missing:
        have = ", ".join(sorted(map(str, batch))) or "none"
        raise BatchError(
            f"term '{term}' requires batch key {missing[0]!r} (requires: {', '.join(requires)}); the batch has: {have}"
        )


def check_batch_agrees(keys: Sequence[str], batch: Batch) -> None:
    """Fail before any compute when the tensors under ``keys`` sit on different devices or batch sizes.

    Reads only metadata (device, shape), so it never syncs with the device.
    """
    tensors = {k: batch[k] for k in keys if isinstance(batch.get(k), torch.Tensor)}
    devices: dict[str, list[str]] = {}
    for key, value in tensors.items():
        devices.setdefault(str(value.device), []).append(key)
    if len(devices) > 1:
        where = "; ".join(f"{', '.join(map(repr, ks))} on {d}" for d, ks in devices.items())
        raise BatchError(f"batch keys are on different devices: {where}; expected one device")
    sizes: dict[int, list[str]] = {}
    for key, value in tensors.items():
        if value.dim() > 0:
            sizes.setdefault(value.shape[0], []).append(key)
    if len(sizes) > 1:
        where = "; ".join(f"{size} in {', '.join(map(repr, ks))}" for size, ks in sizes.items())
        raise BatchError(f"batch size (dim 0) differs across batch keys: {where}; expected one batch size")


def check_tensor(
    term: str,
    key: str,
    value: Any,
    layout: str,
    *,
    channels: int | None = None,
) -> torch.Tensor:
    """Check one batch entry against a layout such as ``"B, 2, F, T"`` and return it.

    The layout's rank is the expected rank and its integers pinned sizes; ``channels`` pins dimension 1.
    Integer and boolean tensors are refused (a loss needs a floating dtype to carry a gradient), and so
    are complex ones (a loss is a real number).
    """
    if not isinstance(value, torch.Tensor):
        raise BatchError(f"{term}: batch[{key!r}] expected a tensor [{layout}], got {type(value).__name__}")
    wrong = misfit(term, key, tuple(value.shape), layout, channels=channels)
    if wrong:
        raise BatchError(wrong)
    if value.is_complex():
        raise BatchError(
            f"{term}: batch[{key!r}] expected a real floating dtype, got {value.dtype}; "
            "pass magnitudes or real and imaginary parts as channels"
        )
    if not value.is_floating_point():
        raise BatchError(f"{term}: batch[{key!r}] expected a floating dtype, got {value.dtype}")
    if value.numel() == 0:
        raise BatchError(f"{term}: batch[{key!r}] is empty: shape {_shape(value)}, expected [{layout}]")
    return value


def check_pair(
    term: str, batch: Batch, a: str, b: str, layout: str, *, channels: int | None = None, same_shape: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two entries that are compared elementwise: same layout, shape (or batch size) and device."""
    x = check_tensor(term, a, batch[a], layout, channels=channels)
    y = check_tensor(term, b, batch[b], layout, channels=channels)
    if same_shape and x.shape != y.shape:
        raise BatchError(
            f"{term}: batch[{a!r}] has shape {_shape(x)} but batch[{b!r}] has {_shape(y)}; "
            f"expected equal shapes [{layout}]"
        )
    if x.shape[0] != y.shape[0]:
        raise BatchError(f"{term}: batch size differs: batch[{a!r}] {_shape(x)} vs batch[{b!r}] {_shape(y)}")
    if x.device != y.device:
        raise BatchError(
            f"{term}: batch[{a!r}] is on {x.device} but batch[{b!r}] is on {y.device}; expected one device"
        )
    return x, y


def upcast(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """float16/bfloat16 tensors as float32 (losses reduce, divide and take logs: half precision is too coarse)."""
    return tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)
