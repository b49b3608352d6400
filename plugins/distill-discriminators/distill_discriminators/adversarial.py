"""Adversarial: owns the discriminators, their optimizer and schedule; trains D on detached fakes and gives the
generator its adversarial and feature-matching losses from one D forward, with D read-only.

Generic in what it wraps: any Discriminator from the registry, any loss form. It assumes nothing about the
loop that calls it: ``update(fake, real)`` once per batch, then ``forward(fake, real)`` for the generator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

import attrs
import torch
from torch import nn

from distill_core.config.converter import converter
from distill_core.terms.base import BatchError
from distill_core.terms.base import check_pair as check_batch_pair

from .base import Discriminator, SubOutput
from .config import AdversarialConfig, DiscriminatorSpec, FeatureMatchingConfig, OptimizerConfig, SchedulerConfig
from .losses import LossForm, discriminator_loss, feature_matching, generator_loss, mean_score
from .optim import make_optimizer, make_scheduler, step_unless
from .power import power_iterating

EXTRA = "_extra_state"
TERM = "adversarial"  # the term's name, in the batch checks' messages


class StateMismatch(ValueError):
    """A saved discriminator state that does not fit this discriminator's config and architecture; ``changes``
    lists each option that differs (``discriminators[0].options.periods: [2, 3] -> [2, 5]``), saved -> now."""

    def __init__(self, message: str, changes: list[str] | None = None) -> None:
        super().__init__(message)
        self.changes = list(changes or [])


@attrs.frozen
class Resolved:
    """The fields an AdversarialConfig leaves None until its ``__attrs_post_init__`` fills them in (from the
    preset, or the defaults), typed as filled: what the Adversarial reads."""

    discriminators: tuple[DiscriminatorSpec, ...]
    loss: LossForm
    feature_matching: FeatureMatchingConfig
    gen_weight: float
    feat_weight: float
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    grad_clip: float
    grad_clip_scope: Literal["ensemble", "each"]

    @classmethod
    def of(cls, config: AdversarialConfig) -> Resolved:
        """``config``'s filled-in fields; one that is still None (set back after validation) is refused."""
        c = config
        if (
            c.discriminators is None
            or c.loss is None
            or c.feature_matching is None
            or c.gen_weight is None
            or c.feat_weight is None
            or c.optimizer is None
            or c.scheduler is None
            or c.grad_clip is None
            or c.grad_clip_scope is None
        ):
            unset = [k for k in attrs.fields_dict(cls) if getattr(c, k) is None]
            raise ValueError(
                f"adversarial: {', '.join(unset)} set back to None after the config loaded; expected values"
            )
        return cls(
            c.discriminators,
            c.loss,
            c.feature_matching,
            c.gen_weight,
            c.feat_weight,
            c.optimizer,
            c.scheduler,
            c.grad_clip,
            c.grad_clip_scope,
        )


class Adversarial(nn.Module):
    """The discriminators, their optimizer (and schedule), an update counter, and the losses both sides use.

    D's parameters require grad only inside ``update``: the generator's pass creates no D weight gradients,
    and handing ``parameters()`` of this module to the generator's optimizer moves nothing.
    """

    updates: torch.Tensor
    skipped: torch.Tensor
    # How each piece of D's state stays equal across torch.distributed ranks (distill_core.terms.stateful): its
    # parameters by their averaged gradients (every parameter's default), the counters and spectral norm's
    # vectors (buffers: the default) because every rank takes the same step.
    state_sync: Mapping[str, str] = {"updates": "broadcast", "skipped": "broadcast"}

    def __init__(self, config: AdversarialConfig) -> None:
        super().__init__()
        self.config = config
        self.settings = settings = Resolved.of(config)
        self.discriminators = nn.ModuleList(spec.build(config.width) for spec in settings.discriminators)
        self.discriminators.requires_grad_(False)
        self.optimizer = make_optimizer(self.discriminators.parameters(), settings.optimizer)
        self.scheduler = make_scheduler(self.optimizer, settings.scheduler)
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))  # D updates applied
        self.register_buffer("skipped", torch.zeros((), dtype=torch.int64))  # non-finite D losses skipped
        self.power_iterating = power_iterating(self.discriminators)  # spectral norm's stateful forwards
        self.fingerprint = fingerprint(self)
        self._loading: str | None = None  # while a state loads: its prefix, which messages name
        if config.init != "fresh":
            assert config.init_from is not None  # AdversarialConfig requires it unless init = 'fresh'
            self.load_initial(config.init_from, weights_only=config.init == "weights_only")

    # --- the two sides ---------------------------------------------------------------------------------
    def judge(self, x: torch.Tensor) -> list[list[SubOutput]]:
        """Every discriminator's sub-outputs on waveforms ``[B, C, N]``."""
        return [d(x) for d in self.discriminators]

    def judge_pair(
        self, d: Discriminator, fake: torch.Tensor, real: torch.Tensor
    ) -> tuple[list[SubOutput], list[SubOutput]]:
        """One discriminator's sub-outputs on real and on fake: one forward over both concatenated (per-signal
        ops only, so it equals two), or apart, real first, where spectral norm runs (HiFi-GAN's order: each
        forward runs one power iteration) or the kind says so (``Discriminator.judges_jointly``)."""
        if self.power_iterating or not d.judges_jointly:
            return d.judge_apart(real, fake)
        n = fake.shape[0]
        outputs = d(torch.cat([fake, real]))
        return [halve(o, slice(n, None)) for o in outputs], [halve(o, slice(0, n)) for o in outputs]

    def update(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D step on ``fake.detach()`` and ``real``: loss, backward, clip, optimizer (skipped on the device
        when the loss is not finite), schedule. Returns ``disc_loss``, ``real_score`` and ``fake_score``.

        Each discriminator judges fake and real as ``judge_pair`` says: in one forward, or apart. With spectral
        norm, real and then fake go through separately, as HiFi-GAN's D step does: each forward runs one power
        iteration, and the estimate of the weight's norm that each half sees is part of the loss.
        """
        fake, real = check_pair(self, fake, real)
        with torch.enable_grad(), self.trainable():
            fake, real = fake.detach(), real.detach()
            judged = [self.judge_pair(cast(Discriminator, d), fake, real) for d in self.discriminators]
            loss = torch.stack(
                [
                    spec.loss_weight * discriminator_loss(self.settings.loss, r, f, spec.loss_reduce)
                    for spec, (r, f) in zip(self.settings.discriminators, judged)
                ]
            ).sum()
            with torch.no_grad():  # the scores need the logits alone: the feature maps go with the graph
                scores = {
                    "real_score": torch.stack([mean_score(r) for r, _ in judged]).mean(),
                    "fake_score": torch.stack([mean_score(f) for _, f in judged]).mean(),
                }
            del judged
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        norm = self.clip_gradients()
        # the norm is of the gradient averaged over the ranks: a non-finite one on any rank skips every rank alike
        bad = ~torch.isfinite(loss) | ~torch.isfinite(norm)
        step_unless(self.optimizer, bad)
        # D's gradients are freed once D has stepped: an optimizer given D's parameters by mistake (the
        # generator's) then finds no gradient to step them with.
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and self.settings.scheduler.interval == "step":
            self.scheduler.step()
        self.updates += (~bad).long()
        self.skipped += bad.long()
        return {"disc_loss": loss.detach(), **scores}

    def clip_gradients(self) -> torch.Tensor:
        """Clip D's gradient to ``grad_clip`` (none at 0), as a whole or per discriminator, on the device; returns
        the norm of the whole gradient before clipping (non-finite when any part is)."""
        clip = self.settings.grad_clip
        groups = (
            [list(d.parameters()) for d in self.discriminators]
            if self.settings.grad_clip_scope == "each"
            else [list(self.discriminators.parameters())]
        )
        norms = []
        for params in groups:
            if clip > 0:
                norms.append(nn.utils.clip_grad_norm_(params, clip, foreach=True))
            else:
                norms.append(nn.utils.get_total_norm([p.grad for p in params if p.grad is not None], foreach=True))
        return norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms))

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generator's components from one D forward on ``fake`` (D read-only, real under no_grad):
        ``gen`` (adversarial) and ``feat`` (feature matching), unweighted by gen_weight / feat_weight.

        Read-only includes spectral norm's power iteration, which does not run here (HiFi-GAN's generator
        pass runs two more): the value is a function of D's state, the same on every call.
        """
        fake, real = check_pair(self, fake, real)
        with self.power_iteration_off():
            with torch.no_grad():
                reals = self.judge(real.detach())
            fakes = self.judge(fake)
        specs, fm = self.settings.discriminators, self.settings.feature_matching
        gen = torch.stack(
            [s.loss_weight * generator_loss(self.settings.loss, f, s.loss_reduce) for s, f in zip(specs, fakes)]
        ).sum()
        feat = torch.stack(
            [
                s.loss_weight
                * feature_matching(r, f, layers=fm.layers, include_logits=s.matches_logits(fm), how=s.feat_reduction)
                for s, r, f in zip(specs, reals, fakes)
            ]
        ).sum()
        return {"gen": gen, "feat": feat}

    def generator_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``gen_weight * gen + feat_weight * feat``: the generator's adversarial loss as one tensor."""
        out = self(fake, real)
        return self.settings.gen_weight * out["gen"] + self.settings.feat_weight * out["feat"]

    def end_epoch(self) -> None:
        """Step a per-epoch schedule (HiFi-GAN's); a per-step one steps inside ``update``."""
        if self.scheduler is not None and self.settings.scheduler.interval == "epoch":
            self.scheduler.step()

    @contextmanager
    def trainable(self) -> Iterator[None]:
        """D's parameters require grad inside, and only inside, this block."""
        self.discriminators.requires_grad_(True)
        try:
            yield
        finally:
            self.discriminators.requires_grad_(False)

    @contextmanager
    def power_iteration_off(self) -> Iterator[None]:
        """Spectral norm uses its current estimate inside this block and leaves it as it is."""
        modes = [m.training for m in self.power_iterating]
        for m in self.power_iterating:
            m.training = False
        try:
            yield
        finally:
            for m, mode in zip(self.power_iterating, modes):
                m.training = mode

    # --- state ------------------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "discriminators": describe(self),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        }

    def set_extra_state(self, state: Any) -> None:
        where = self._where()
        if not isinstance(state, Mapping) or not isinstance(state.get("optimizer"), Mapping):
            got = sorted(map(str, state)) if isinstance(state, Mapping) else type(state).__name__
            raise StateMismatch(
                f"{where}: the saved D state {where}.{EXTRA} has no 'optimizer' (it holds {got}); expected what "
                f"Adversarial.state_dict() saves: fingerprint, discriminators, optimizer, scheduler"
            )
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:  # torch's own refusals, one line each
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StateMismatch(
                f"{where}: cannot restore D's optimizer from {where}.{EXTRA}['optimizer']: {first}"
            ) from None
        if self.scheduler is not None and state.get("scheduler") is not None:
            try:
                self.scheduler.load_state_dict(state["scheduler"])
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StateMismatch(
                    f"{where}: cannot restore D's schedule from {where}.{EXTRA}['scheduler']: {first}"
                ) from None

    def _where(self) -> str:
        """How messages name this module while a state loads: its key prefix (``terms.adversarial.adversarial``)."""
        return (self._loading or "").rstrip(".") or "adversarial"

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: Any,
        strict: bool,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        check_fingerprint(self, state_dict.get(prefix + EXTRA), prefix)
        where = prefix.rstrip(".") or "adversarial"
        mine = self.state_dict()
        for name, value in mine.items():
            saved = state_dict.get(prefix + name)
            if isinstance(value, torch.Tensor) and isinstance(saved, torch.Tensor) and saved.shape != value.shape:
                raise StateMismatch(
                    f"{where}: saved {prefix + name} has shape {list(saved.shape)}, this discriminator's is "
                    f"{list(value.shape)}: the state was made for other discriminator options"
                )
        if strict:
            absent = [prefix + name for name in mine if prefix + name not in state_dict]
            if absent:
                more = f" (+{len(absent) - 3} more)" if len(absent) > 3 else ""
                raise StateMismatch(
                    f"{where}: the saved state has no {', '.join(absent[:3])}{more}; it was cut, or saved by "
                    f"another version"
                )
        self._loading = prefix
        try:
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args, **kwargs)
        finally:
            self._loading = None

    def load_initial(
        self,
        source: str | Path | Mapping[str, Any],
        *,
        weights_only: bool,
        format: str | None = None,
        what: str | None = None,
    ) -> str:
        """D's starting state from a file (or a checkpoint already loaded): an Adversarial's state (alone, or
        anywhere in a checkpoint's nested dicts), or an anchor's discriminator checkpoint (anchor_formats: DAC,
        HiFi-GAN, BigVGAN, audiocraft, Vocos, told from its keys). Its weights only, or everything
        (``resume``). Returns the format read: ``"distill"`` (ours) or the anchor's."""
        from . import anchor_formats  # it imports this module (Adversarial, StateMismatch)

        where = what or (f"init_from = {str(source)!r}" if isinstance(source, (str, Path)) else "checkpoint")
        data = anchor_formats.read_checkpoint(source, "init_from") if isinstance(source, (str, Path)) else source
        found = find_state(data) if format in (None, "distill") else None
        if found is None:
            if format == "distill":
                raise StateMismatch(
                    f"{where} holds no discriminator state of ours (no '{EXTRA}' with a fingerprint in it, at "
                    f"any level)"
                )
            anchor = anchor_formats.detect(data, where, format)
            anchor_formats.load_state(self, anchor, resume=not weights_only, what=where)
            return anchor.format
        state, prefix = found
        check_fingerprint(self, state[prefix + EXTRA], where)
        ours = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if weights_only:
            ours = {k: v for k, v in ours.items() if k.startswith("discriminators.")}
            self.discriminators.load_state_dict({k[len("discriminators.") :]: v for k, v in ours.items()})
        else:
            self.load_state_dict(ours)
        return "distill"


def halve(out: SubOutput, part: slice) -> SubOutput:
    """The fake or real half of a sub-output of the concatenated batch."""
    return SubOutput([f[part] for f in out.features], out.logits[part])


def check_pair(
    adv: Adversarial, fake: torch.Tensor, real: torch.Tensor, keys: tuple[str, str] = ("fake", "real")
) -> tuple[torch.Tensor, torch.Tensor]:
    """``fake`` and ``real`` as D reads them, checked before any compute (metadata only, no sync): waveforms
    [B, C, N] of one shape, on D's device, with more samples than channels and at least the samples every
    discriminator needs; cast to D's dtype (float64 into a float32 D, float32 into one in float64). Each
    BatchError names the batch key (``keys``), the shape and what was expected."""
    a, b = keys
    x, y = check_batch_pair(TERM, {a: fake, b: real}, a, b, "B, C, N")
    param = next(adv.discriminators.parameters())
    if x.device != param.device:
        raise BatchError(
            f"{TERM}: batch[{a!r}] is on {x.device} but the discriminators are on {param.device}; expected "
            f"one device (move the loss with .to(device))"
        )
    channels, n = x.shape[1], x.shape[2]
    need, who = 1, ""
    for i, d in enumerate(adv.discriminators):
        if isinstance(d, Discriminator):
            least, why = d.min_samples()
            if least > need:
                need, who = least, f" for discriminators[{i}] ({d.name}: {why})"
    shape = "[" + ", ".join(map(str, x.shape)) + "]"
    if channels > n:
        raise BatchError(
            f"{TERM}: batch[{a!r}] has shape {shape}: {channels} channels of {n} samples; expected waveforms "
            f"[B, C, N] with more samples than channels, N >= {need}{who}; a spectrogram [B, F, T] is not a waveform"
        )
    if n < need:
        raise BatchError(
            f"{TERM}: batch[{a!r}] has shape {shape}: {n} samples per signal; expected waveforms [B, C, N] "
            f"with N >= {need}{who}"
        )
    if x.dtype != param.dtype:
        x, y = x.to(param.dtype), y.to(param.dtype)
    return x, y


def describe(adv: Adversarial) -> str:
    """The discriminators in one line: kind and options, width included."""
    parts = []
    for spec in adv.settings.discriminators:
        options = converter.unstructure(spec.build_config(adv.config.width))
        parts.append(f"{spec.kind}({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})")
    return " + ".join(parts)


def fingerprint(adv: Adversarial) -> str:
    """A short hash of what D's weights mean: each discriminator's resolved config and every weight's name
    and shape. Loss form, weights and optimizer settings are not in it: changing them keeps D usable."""
    arch = [(k, list(v.shape)) for k, v in adv.discriminators.state_dict().items()]
    blob = json.dumps({"discriminators": describe(adv), "arch": arch}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_fingerprint(adv: Adversarial, extra: Any, where: str) -> None:
    """Refuse, in one line, a saved state made for another discriminator: each option that differs as
    ``path: saved -> now`` (the first few), or, with the same options, that the weights' layout differs."""
    # lazy: only a mismatch reads the saved description back and diffs it
    import ast

    from distill_core.config.diff import diff_lines, summarize

    where = (where or "state").rstrip(".")
    saved = extra.get("fingerprint") if isinstance(extra, Mapping) else None
    if saved is None:
        raise StateMismatch(
            f"{where}: no discriminator fingerprint in the saved state; it was not saved by Adversarial.state_dict()"
        )
    if saved == adv.fingerprint:
        return

    def split(text: str, sep: str) -> list[str]:
        """``text`` cut at each ``sep`` outside brackets."""
        parts, depth, start, i = [], 0, 0, 0
        while i < len(text):
            if text[i] in "([{":
                depth += 1
            elif text[i] in ")]}":
                depth -= 1
            elif depth == 0 and text.startswith(sep, i):
                parts.append(text[start:i])
                start = i = i + len(sep)
                continue
            i += 1
        return [*parts, text[start:]]

    def value(text: str) -> Any:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text  # a string option, written without quotes

    def parsed(text: Any) -> Any:
        """describe()'s line (what every saved state holds) as [{kind, options}], or the text as it is."""
        if not isinstance(text, str):
            return text
        out = []
        for part in split(text, " + "):
            kind, paren, rest = part.partition("(")
            if not paren or not rest.endswith(")"):
                return text
            options = {}
            for item in split(rest[:-1], ", ") if rest[:-1] else []:
                key, eq, raw = item.partition("=")
                if not eq:
                    return text
                options[key] = value(raw)
            out.append({"kind": kind, "options": options})
        return out

    changes = diff_lines(parsed(extra.get("discriminators")), parsed(describe(adv)), root="discriminators")
    if where.startswith("init_from"):
        advice = "use the config it was saved with, or init = 'fresh'"
    else:
        advice = "load it into an adversarial term configured as when it was saved"
    if changes:
        raise StateMismatch(
            f"{where}: the saved discriminators differ from this config's: {summarize(changes)}; {advice}", changes
        )
    raise StateMismatch(
        f"{where}: the saved discriminators have these options but another layout of weights (names or "
        f"shapes; fingerprint {saved}, this one's {adv.fingerprint}): saved by another version of their code?; "
        f"{advice}",
        ["the weights' layout (names or shapes)"],
    )


def find_state(data: Any, depth: int = 0) -> tuple[Mapping[str, Any], str] | None:
    """The first mapping (searched a few levels deep, lists of states too) with a '<prefix>_extra_state' holding
    a fingerprint: an Adversarial's state, alone or inside a checkpoint."""
    if depth > 4:
        return None
    if isinstance(data, (list, tuple)):
        values: Any = data
    elif isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(key, str) and key.endswith(EXTRA) and isinstance(value, Mapping) and "fingerprint" in value:
                return data, key[: -len(EXTRA)]
        values = data.values()
    else:
        return None
    for value in values:
        found = find_state(value, depth + 1)
        if found is not None:
            return found
    return None
