"""Schedules: a term's or group's weight as a function of training progress, and when a stateful term's
update step runs.

A weight is a plain float (constant) or one of these attrs classes. Weights are evaluated on the host
from (epoch, total_epochs) once per step, so they never touch the device. An update step's schedule counts
training batches and decides on the host too, from Python's own seeded generators (no device, no global RNG).
"""

from __future__ import annotations

import math
from typing import ClassVar, Union

import attrs


def _non_negative_finite(inst: object, attribute: attrs.Attribute, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name}: expected a finite number >= 0, got {value!r}")


def _fraction(inst: object, attribute: attrs.Attribute, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{attribute.name}: expected 0 <= {attribute.name} <= 1, got {value!r}")


def _at_least_one(inst: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name}: expected an int >= 1, got {value!r}")


def _non_negative(inst: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name}: expected an int >= 0, got {value!r}")


@attrs.define(frozen=True)
class Constant:
    """The same weight at every epoch."""

    kind: ClassVar[str] = "constant"
    value: float = attrs.field(default=1.0, validator=_non_negative_finite)

    def at(self, epoch: int | None, total_epochs: int | None) -> float:
        return float(self.value)


@attrs.define(frozen=True)
class LinearWarmup:
    """Linear from 0 to ``max`` over ``int(total_epochs * warmup_fraction)`` epochs, then ``max``.

    The seed's warm-up schedule: with no warm-up epochs the weight is ``max`` at once.
    """

    kind: ClassVar[str] = "linear_warmup"
    max: float = attrs.field(default=1.0, validator=_non_negative_finite)
    warmup_fraction: float = attrs.field(default=0.3, validator=_fraction)

    def at(self, epoch: int | None, total_epochs: int | None) -> float:
        if epoch is None or total_epochs is None:
            return float(self.max)
        warmup_epochs = int(total_epochs * self.warmup_fraction)
        if warmup_epochs == 0:
            return float(self.max)
        return float(self.max) * min(epoch / warmup_epochs, 1.0)


@attrs.define(frozen=True)
class Cosine:
    """Half-cosine from ``start`` at epoch 0 to ``end`` at the last epoch."""

    kind: ClassVar[str] = "cosine"
    start: float = attrs.field(default=1.0, validator=_non_negative_finite)
    end: float = attrs.field(default=0.0, validator=_non_negative_finite)

    def at(self, epoch: int | None, total_epochs: int | None) -> float:
        if epoch is None or total_epochs is None:
            return float(self.end)
        t = min(max(epoch / max(total_epochs - 1, 1), 0.0), 1.0)
        return float(self.end) + (float(self.start) - float(self.end)) * 0.5 * (1.0 + math.cos(math.pi * t))


@attrs.define(frozen=True)
class Cyclical:
    """Cyclical annealing (Fu et al., 2019): ``cycles`` repeats of a linear ramp over ``ratio`` of each
    cycle up to ``max``, then ``max`` for the rest of the cycle."""

    kind: ClassVar[str] = "cyclical"
    max: float = attrs.field(default=1.0, validator=_non_negative_finite)
    cycles: int = attrs.field(default=4, validator=_at_least_one)
    ratio: float = attrs.field(default=0.5, validator=_fraction)

    def at(self, epoch: int | None, total_epochs: int | None) -> float:
        if epoch is None or total_epochs is None:
            return float(self.max)
        period = total_epochs / self.cycles
        phase = (epoch % period) / period if period > 0 else 1.0
        if self.ratio == 0:
            return float(self.max)
        return float(self.max) * min(phase / self.ratio, 1.0)


SCHEDULES: dict[str, type] = {cls.kind: cls for cls in (Constant, LinearWarmup, Cosine, Cyclical)}
# typing.Union, not X | Y: the converter's hooks and the schema dispatch on typing.Union's origin
Schedule = Union[Constant, LinearWarmup, Cosine, Cyclical]  # noqa: UP007
Weight = Union[float, Constant, LinearWarmup, Cosine, Cyclical]  # noqa: UP007


def weight_at(weight: Weight, epoch: int | None = None, total_epochs: int | None = None) -> float:
    """The one way a weight is evaluated: a float as itself, a schedule at (epoch, total_epochs).

    With no progress given, a schedule returns its value at the end of training.
    """
    if isinstance(weight, (int, float)):
        return float(weight)
    return weight.at(epoch, total_epochs)


@attrs.define(frozen=True)
class UpdateSchedule:
    """When a stateful term's update step runs, in training batches (calls of ``CombinedLoss.update``, from 0):
    off before ``start`` (a pretraining span), then every ``every``-th call, each kept with ``probability``
    by a generator seeded from ``seed`` and the term's name (so ranks agree and a resume replays the draws)."""

    every: int = attrs.field(default=1, validator=_at_least_one)
    probability: float = attrs.field(default=1.0, validator=_fraction)
    start: int = attrs.field(default=0, validator=_non_negative)
    seed: int = 0

    def due(self, step: int) -> bool:
        """Whether ``step`` is on the schedule's grid (before the probability draw)."""
        return step >= self.start and (step - self.start) % self.every == 0
