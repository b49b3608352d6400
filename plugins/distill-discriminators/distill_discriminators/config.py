"""The adversarial setup as data: which discriminators, loss form, feature matching, weights, D's optimizer.

``preset`` fills every field left out with an anchor's values (presets.py), so one line gives an anchor's setup
and any field can still be overridden.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from distill_core import PATH_RELATIVE_TO_FILE, InvalidConfig, Weight
from distill_core.config.converter import converter, problems_from, structure_checked

from .base import MAX_PARAMETERS, MAX_WIDTH, Discriminator
from .losses import LossForm, Reduce

Problems = list[tuple[str, str]]


@attrs.define
class DiscriminatorSpec:
    """One multi-discriminator of the ensemble: its registered ``kind``, that kind's options, and how its
    sub-discriminators' losses are weighted and reduced (summed, or averaged over them).

    Under a preset, the preset's entry of the same kind gives the defaults, field by field: ``options`` key by
    key, then ``weight``, ``reduce`` and ``feat_reduce`` (None: the preset's, else 1.0, "sum", "sum").
    ``{kind = "mpd"}`` under ``preset = "dac"`` is DAC's MPD; ``{kind = "mpd", options = {periods = [2, 3]}}``
    is DAC's MPD with two periods. The options are checked merged (``AdversarialConfig``, or ``build``): under
    vocos, whose MRD pads as 'center', an MRD's ``hop_factor = 0.5`` is valid, though alone it is not."""

    kind: str
    options: dict[str, Any] = attrs.field(factory=dict)
    weight: float | None = None
    reduce: Reduce | None = None
    feat_reduce: Reduce | None = None
    include_logits: bool | None = None

    def __attrs_post_init__(self) -> None:
        problems: Problems = []
        if self.weight is not None and not (math.isfinite(self.weight) and self.weight >= 0):
            problems.append(("weight", f"expected a finite number >= 0, got {self.weight!r}"))
        try:
            self.discriminator_class()
        except KeyError as exc:
            problems.append(("kind", exc.args[0]))
        if problems:
            raise InvalidConfig(problems)

    @classmethod
    def __distill_json_schema__(cls, schema: dict[str, Any]) -> dict[str, Any]:
        """The entry's schema as a union tagged by ``kind``, each kind's options typed (``distill-loss schema``)."""
        from .hookspecs import spec_schema  # the installed kinds, wanted only when a schema is written

        return spec_schema(schema)

    @property
    def loss_weight(self) -> float:
        """``weight``, 1.0 where unset."""
        return 1.0 if self.weight is None else self.weight

    @property
    def loss_reduce(self) -> Reduce:
        """``reduce``, "sum" where unset."""
        return self.reduce or "sum"

    @property
    def feat_reduction(self) -> Reduce:
        """``feat_reduce``, "sum" where unset."""
        return self.feat_reduce or "sum"

    def matches_logits(self, feature_matching: FeatureMatchingConfig) -> bool:
        """Whether feature matching compares this entry's logits: its own ``include_logits``, else the term's."""
        return feature_matching.include_logits if self.include_logits is None else self.include_logits

    def discriminator_class(self) -> type[Discriminator]:
        from .hookspecs import discriminators

        return discriminators().get(self.kind)

    def _option_problems(self) -> Problems:
        _, problems = structure_checked(self.options, self.discriminator_class().config_class, "options")
        return problems

    def over(self, defaults: DiscriminatorSpec | None) -> DiscriminatorSpec:
        """This entry with what it leaves out taken from ``defaults`` (a preset's entry of its kind), then
        from the class defaults: every field set (its options not yet checked: ``_option_problems``)."""
        options = {**(defaults.options if defaults else {}), **self.options}
        return DiscriminatorSpec(
            self.kind,
            options,
            self.weight if self.weight is not None else defaults.loss_weight if defaults else 1.0,
            self.reduce or (defaults.loss_reduce if defaults else "sum"),
            self.feat_reduce or (defaults.feat_reduction if defaults else "sum"),
            self.include_logits if self.include_logits is not None else defaults.include_logits if defaults else None,
        )

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
    ``grad_clip``: max norm of D's gradient in its update, 0 for none; ``grad_clip_scope``: of the whole
    ensemble's gradient (``"ensemble"``: DAC) or of each discriminator's apart (``"each"``: BigVGAN's train.py
    clips MPD and CQTD separately). ``width``: a channel multiplier for
    every discriminator that sets none itself (tests and small models). ``init``: where D starts: ``fresh``
    (random), ``weights_only`` (D's weights from ``init_from``, a fresh optimizer) or ``resume`` (weights,
    optimizer, scheduler and step counter from ``init_from``). ``init_from``: a checkpoint of ours or an
    anchor's (DAC, HiFi-GAN, BigVGAN, audiocraft, Vocos; anchor_formats); in a config file, a relative path is
    read from that file's folder.
    """

    weight: Weight = 1.0
    preset: Literal["dac", "hifigan_v1", "bigvgan_v2", "encodec", "vocos"] | None = "dac"
    discriminators: tuple[DiscriminatorSpec, ...] | None = None
    loss: LossForm | None = None
    feature_matching: FeatureMatchingConfig | None = None
    gen_weight: float | None = None
    feat_weight: float | None = None
    optimizer: OptimizerConfig | None = None
    scheduler: SchedulerConfig | None = None
    grad_clip: float | None = None
    grad_clip_scope: Literal["ensemble", "each"] | None = None
    width: float | None = None
    init: Init = "fresh"
    init_from: str | None = attrs.field(default=None, metadata={PATH_RELATIVE_TO_FILE: True})

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
        if self.discriminators:
            problems += self._resolve_discriminators()
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
        if self.grad_clip_scope is None:
            self.grad_clip_scope = "ensemble"
        if self.discriminators is not None and not self.discriminators:
            problems.append(("discriminators", "expected at least one discriminator"))
        for key in ("gen_weight", "feat_weight", "grad_clip"):
            v = getattr(self, key)
            if v is not None and not (math.isfinite(v) and v >= 0):
                problems.append((key, f"expected a finite number >= 0, got {v!r}"))
        if self.width is not None and not (math.isfinite(self.width) and self.width > 0):
            problems.append(("width", f"expected a channel multiplier > 0, got {self.width!r}"))
        elif self.width is not None and self.width > MAX_WIDTH:
            problems.append(
                (
                    "width",
                    f"expected a channel multiplier of at most {MAX_WIDTH:g} (x the anchors' channels), "
                    f"got {self.width!r}",
                )
            )
        elif self.width is not None and self.discriminators and not problems:
            problems += self._width_problems()
        if not problems and self.discriminators:
            problems += self._size_problems()
        problems += self._init_problems()
        if problems:
            raise InvalidConfig(problems)

    def _resolve_discriminators(self) -> Problems:
        """Every entry with its fields set, and its options checked: what it leaves out from the preset's entry
        of the same kind (the n-th of a kind from the preset's n-th, else its first), then the class defaults."""
        from .presets import PRESETS

        ours: tuple[DiscriminatorSpec, ...] = ()
        if self.preset is not None:
            ours = converter.structure(PRESETS[self.preset]["discriminators"], tuple[DiscriminatorSpec, ...])
        problems: Problems = []
        resolved: list[DiscriminatorSpec] = []
        seen: dict[str, int] = {}
        for i, spec in enumerate(self.discriminators or ()):
            same = [d for d in ours if d.kind == spec.kind]
            n = seen[spec.kind] = seen.get(spec.kind, -1) + 1
            defaults = same[n] if n < len(same) else same[0] if same else None
            merged = spec.over(defaults)
            added = {k: v for k, v in (defaults.options if defaults else {}).items() if k not in spec.options}
            where = f" (with preset {self.preset!r}'s options for {spec.kind!r}: {added})" if added else ""
            problems += [(f"discriminators[{i}].{p}", f"{r}{where}") for p, r in merged._option_problems()]
            resolved.append(merged)
        self.discriminators = tuple(resolved)
        return problems

    def _size_problems(self) -> Problems:
        """The ensemble's weights, counted from the configs before anything is built: at most MAX_PARAMETERS
        (kinds that cannot count theirs, a plugin's, are left out of the sum)."""
        counts = []
        for i, spec in enumerate(self.discriminators or ()):
            count = getattr(spec.build_config(self.width), "parameter_count", None)
            if callable(count):
                counts.append((i, spec.kind, int(count())))
        total = sum(n for _, _, n in counts)
        if total <= MAX_PARAMETERS:
            return []
        each = ", ".join(f"[{i}] {kind} {n:,}" for i, kind, n in counts)
        width = f" at width {self.width:g}" if self.width is not None else ""
        return [
            (
                "discriminators",
                f"would hold {total:,} parameters{width} ({each}; {4 * total / 2**30:.1f} GiB in float32); "
                f"expected at most {MAX_PARAMETERS:,}: fewer or narrower discriminators (width, channels)",
            )
        ]

    def _init_problems(self) -> Problems:
        """``init_from`` given where ``init`` reads it, and naming a file that can be a checkpoint (found without
        loading it: ``check`` says so, not the build)."""
        if self.init == "fresh":
            if self.init_from:
                return [
                    (
                        "init_from",
                        f"{self.init_from!r} is given but init = 'fresh' starts D at random: set init = "
                        f"'weights_only' (its weights) or 'resume' (weights, optimizer, schedule), or drop init_from",
                    )
                ]
            return []
        if not self.init_from:
            return [("init_from", f"init = {self.init!r} needs the file holding D's state; none given")]
        from .anchor_formats.files import file_problem  # it imports the adversarial module, which imports this one

        problem = file_problem(self.init_from)
        return [("init_from", problem)] if problem else []

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
