"""The adversarial setup as data: which discriminators, loss form, feature matching, weights, D's optimizer.

``preset`` fills every field left out with an anchor's values (presets.py), so one line gives an anchor's setup
and any field can still be overridden.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from distill_core import InvalidConfig, Weight
from distill_core.config.converter import converter, problems_from, structure_checked

from .base import Discriminator
from .losses import LossForm, Reduce

Problems = list[tuple[str, str]]


@attrs.define
class DiscriminatorSpec:
    """One multi-discriminator of the ensemble: its registered ``kind``, that kind's options, and how its
    sub-discriminators' losses are weighted and reduced (summed, or averaged over them)."""

    kind: str
    options: dict[str, Any] = attrs.field(factory=dict)
    weight: float = 1.0
    reduce: Reduce = "sum"
    feat_reduce: Reduce = "sum"

    def __attrs_post_init__(self) -> None:
        problems: Problems = []
        if not (math.isfinite(self.weight) and self.weight >= 0):
            problems.append(("weight", f"expected a finite number >= 0, got {self.weight!r}"))
        try:
            self.discriminator_class()
        except KeyError as exc:
            problems.append(("kind", exc.args[0]))
        else:
            problems += self._option_problems()
        if problems:
            raise InvalidConfig(problems)

    def discriminator_class(self) -> type[Discriminator]:
        from .hookspecs import discriminators

        return discriminators().get(self.kind)

    def _option_problems(self) -> Problems:
        _, problems = structure_checked(self.options, self.discriminator_class().config_class, "options")
        return problems

    def build_config(self, width: float | None = None) -> Any:
        """The kind's config object; ``width``, when given, multiplies the channels unless options set one."""
        options = dict(self.options)
        if width is not None:
            options.setdefault("width", width)
        return converter.structure(options, self.discriminator_class().config_class)

    def build(self, width: float | None = None) -> Discriminator:
        """A new discriminator module of this kind."""
        return self.discriminator_class()(self.build_config(width))


@attrs.define
class FeatureMatchingConfig:
    """L1 between D's feature maps on fake and on real: summed (DAC, HiFi-GAN) or averaged (audiocraft) over
    a sub-discriminator's layers; with the logits as one more map (HiFi-GAN, Vocos) or not (DAC, audiocraft)."""

    layers: Reduce = "sum"
    include_logits: bool = False


@attrs.define
class OptimizerConfig:
    """The discriminator's optimizer (torch.optim.Adam or AdamW, fused where the device has the kernel)."""

    name: Literal["adam", "adamw"] = "adamw"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    eps: float = 1e-8

    def __attrs_post_init__(self) -> None:
        problems: Problems = []
        for key in ("lr", "weight_decay", "eps"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0):
                problems.append((key, f"expected a finite number >= 0, got {v!r}"))
        for i, b in enumerate(self.betas):
            if not 0 <= b < 1:
                problems.append((f"betas[{i}]", f"expected 0 <= beta < 1, got {b!r}"))
        if problems:
            raise InvalidConfig(problems)


@attrs.define
class SchedulerConfig:
    """The discriminator's learning-rate schedule, stepped after each update (``interval = "step"``) or by
    ``Adversarial.end_epoch()`` (``"epoch"``). ``exponential``: lr * gamma ** n; ``cosine``: linear warm-up
    over ``warmup_steps``, then half a cosine to 0 at ``total_steps`` (Vocos)."""

    name: Literal["none", "exponential", "cosine"] = "none"
    gamma: float = 1.0
    warmup_steps: int = 0
    total_steps: int = 0
    interval: Literal["step", "epoch"] = "step"

    def __attrs_post_init__(self) -> None:
        problems: Problems = []
        if not 0 < self.gamma <= 1:
            problems.append(("gamma", f"expected 0 < gamma <= 1, got {self.gamma!r}"))
        if self.warmup_steps < 0:
            problems.append(("warmup_steps", f"expected >= 0, got {self.warmup_steps}"))
        if self.name == "cosine" and self.total_steps <= self.warmup_steps:
            problems.append(
                (
                    "total_steps",
                    f"expected more than warmup_steps={self.warmup_steps} for 'cosine', got {self.total_steps}",
                )
            )
        if problems:
            raise InvalidConfig(problems)


Init = Literal["fresh", "resume", "weights_only"]


@attrs.define
class AdversarialConfig:
    """An adversarial loss: a preset (an anchor's setup) with any field overridden.

    ``gen_weight`` and ``feat_weight`` weigh the generator's adversarial and feature-matching components
    against each other (the anchors' lambdas); ``weight`` is the term's weight in a combined loss.
    ``grad_clip``: max norm of D's gradient in its update, 0 for none. ``width``: a channel multiplier for
    every discriminator that sets none itself (tests and small models). ``init``: where D starts: ``fresh``
    (random), ``weights_only`` (D's weights from ``init_from``, a fresh optimizer) or ``resume`` (weights,
    optimizer, scheduler and step counter from ``init_from``).
    """

    weight: Weight = 1.0
    preset: Literal["dac", "hifigan_v1", "encodec", "vocos"] | None = "dac"
    discriminators: tuple[DiscriminatorSpec, ...] | None = None
    loss: LossForm | None = None
    feature_matching: FeatureMatchingConfig | None = None
    gen_weight: float | None = None
    feat_weight: float | None = None
    optimizer: OptimizerConfig | None = None
    scheduler: SchedulerConfig | None = None
    grad_clip: float | None = None
    width: float | None = None
    init: Init = "fresh"
    init_from: str | None = None

    def __attrs_post_init__(self) -> None:
        from .presets import PRESETS

        problems: Problems = []
        fields = attrs.fields_dict(type(self))
        for key in ("discriminators", "feature_matching", "optimizer", "scheduler"):
            value = getattr(self, key)
            if is_plain(value):  # given in Python as plain data, as a file would give it
                kind = fields[key].type
                assert kind is not None  # annotated, and resolved by attrs.resolve_types below
                try:
                    setattr(self, key, converter.structure(value, kind))
                except Exception as exc:  # cattrs' exception groups: every reason, with its path
                    problems += problems_from(exc, key)
                    setattr(self, key, None)
        if problems:
            raise InvalidConfig(problems)
        if self.preset is not None:
            for key, value in PRESETS[self.preset].items():
                if getattr(self, key) is None:
                    kind = fields[key].type
                    assert kind is not None  # annotated, and resolved by attrs.resolve_types below
                    setattr(self, key, converter.structure(value, kind))
        missing = [
            k
            for k in ("discriminators", "loss", "feature_matching", "gen_weight", "feat_weight", "optimizer")
            if getattr(self, k) is None
        ]
        problems += [(k, "missing: give it, or a preset that sets it") for k in missing]
        if self.scheduler is None:
            self.scheduler = SchedulerConfig()
        if self.grad_clip is None:
            self.grad_clip = 0.0
        if self.discriminators is not None and not self.discriminators:
            problems.append(("discriminators", "expected at least one discriminator"))
        for key in ("gen_weight", "feat_weight", "grad_clip"):
            v = getattr(self, key)
            if v is not None and not (math.isfinite(v) and v >= 0):
                problems.append((key, f"expected a finite number >= 0, got {v!r}"))
        if self.width is not None and not (math.isfinite(self.width) and self.width > 0):
            problems.append(("width", f"expected a channel multiplier > 0, got {self.width!r}"))
        elif self.width is not None and self.discriminators:
            problems += self._width_problems()
        if self.init != "fresh" and not self.init_from:
            problems.append(("init_from", f"init = {self.init!r} needs the file holding D's state; none given"))
        if problems:
            raise InvalidConfig(problems)

    def _width_problems(self) -> Problems:
        """Each discriminator's options with the shared ``width`` applied (e.g. MSD's grouped convs need a
        multiple of 1/8): found here, when the config loads, not when the loss is built."""
        problems: Problems = []
        for i, spec in enumerate(self.discriminators or ()):
            if "width" in spec.options:
                continue  # its own width was checked with its options
            options = {**spec.options, "width": self.width}
            _, found = structure_checked(
                options, spec.discriminator_class().config_class, f"discriminators[{i}].options"
            )
            problems += [
                (
                    p.replace(f"discriminators[{i}].options.width", "width"),
                    f"{r} (for discriminators[{i}], kind {spec.kind!r})",
                )
                for p, r in found
            ]
        return problems


def is_plain(value: Any) -> bool:
    """A mapping, or a sequence holding one: config data not yet structured."""
    if isinstance(value, dict):
        return True
    return isinstance(value, (list, tuple)) and any(isinstance(v, dict) for v in value)


attrs.resolve_types(AdversarialConfig)  # presets are structured into the fields' real types
