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
from typing import Any

import attrs
import torch
from torch import nn

from distill_core.config.converter import converter

from .base import SubOutput
from .config import AdversarialConfig, DiscriminatorSpec, FeatureMatchingConfig, OptimizerConfig, SchedulerConfig
from .losses import LossForm, discriminator_loss, feature_matching, generator_loss, mean_score
from .optim import make_optimizer, make_scheduler, step_unless
from .power import power_iterating

EXTRA = "_extra_state"


class StateMismatch(ValueError):
    """A saved discriminator state that does not fit this discriminator's config and architecture."""


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
        )


class Adversarial(nn.Module):
    """The discriminators, their optimizer (and schedule), an update counter, and the losses both sides use.

    D's parameters require grad only inside ``update``: the generator's pass creates no D weight gradients,
    and handing ``parameters()`` of this module to the generator's optimizer moves nothing.
    """

    updates: torch.Tensor
    skipped: torch.Tensor

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
        if config.init != "fresh":
            assert config.init_from is not None  # AdversarialConfig requires it unless init = 'fresh'
            self.load_initial(config.init_from, weights_only=config.init == "weights_only")

    # --- the two sides ---------------------------------------------------------------------------------
    def judge(self, x: torch.Tensor) -> list[list[SubOutput]]:
        """Every discriminator's sub-outputs on waveforms ``[B, C, N]``."""
        return [d(x) for d in self.discriminators]

    def update(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D step on ``fake.detach()`` and ``real``: loss, backward, clip, optimizer (skipped on the device
        when the loss is not finite), schedule. Returns ``disc_loss``, ``real_score`` and ``fake_score``.

        Without spectral norm, fake and real go through D in one forward (per-signal ops only, so it equals
        two). With it, real and then fake go through separately, as HiFi-GAN's D step does: each forward runs
        one power iteration, and the estimate of the weight's norm that each half sees is part of the loss.
        """
        check_pair(fake, real)
        with torch.enable_grad(), self.trainable():
            if self.power_iterating:
                reals, fakes = self.judge(real.detach()), self.judge(fake.detach())
            else:
                n = fake.shape[0]
                outputs = self.judge(torch.cat([fake.detach(), real.detach()]))
                fakes = [[halve(o, slice(0, n)) for o in subs] for subs in outputs]
                reals = [[halve(o, slice(n, None)) for o in subs] for subs in outputs]
            loss = torch.stack(
                [
                    spec.weight * discriminator_loss(self.settings.loss, r, f, spec.reduce)
                    for spec, r, f in zip(self.settings.discriminators, reals, fakes)
                ]
            ).sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        bad = ~torch.isfinite(loss)
        if self.settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.discriminators.parameters(), self.settings.grad_clip, foreach=True)
        step_unless(self.optimizer, bad)
        if self.scheduler is not None and self.settings.scheduler.interval == "step":
            self.scheduler.step()
        self.updates += (~bad).long()
        self.skipped += bad.long()
        with torch.no_grad():
            scores = {
                "real_score": torch.stack([mean_score(r) for r in reals]).mean(),
                "fake_score": torch.stack([mean_score(f) for f in fakes]).mean(),
            }
        return {"disc_loss": loss.detach(), **scores}

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generator's components from one D forward on ``fake`` (D read-only, real under no_grad):
        ``gen`` (adversarial) and ``feat`` (feature matching), unweighted by gen_weight / feat_weight.

        Read-only includes spectral norm's power iteration, which does not run here (HiFi-GAN's generator
        pass runs two more): the value is a function of D's state, the same on every call.
        """
        check_pair(fake, real)
        with self.power_iteration_off():
            with torch.no_grad():
                reals = self.judge(real.detach())
            fakes = self.judge(fake)
        specs, fm = self.settings.discriminators, self.settings.feature_matching
        gen = torch.stack(
            [s.weight * generator_loss(self.settings.loss, f, s.reduce) for s, f in zip(specs, fakes)]
        ).sum()
        feat = torch.stack(
            [
                s.weight * feature_matching(r, f, layers=fm.layers, include_logits=fm.include_logits, how=s.feat_reduce)
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
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        check_fingerprint(self, state_dict.get(prefix + EXTRA), prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def load_initial(self, path: str | Path, *, weights_only: bool) -> None:
        """D's starting state from a file holding an Adversarial's state (alone, or anywhere in a checkpoint's
        nested dicts): its weights only, or everything (``resume``)."""
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise StateMismatch(f"init_from = {str(path)!r}: cannot read it ({type(exc).__name__}: {exc})") from exc
        found = find_state(data)
        if found is None:
            raise StateMismatch(
                f"init_from = {str(path)!r} holds no discriminator state (no "
                f"'{EXTRA}' with a fingerprint in it, at any level)"
            )
        state, prefix = found
        check_fingerprint(self, state[prefix + EXTRA], f"init_from = {str(path)!r}")
        ours = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if weights_only:
            ours = {k: v for k, v in ours.items() if k.startswith("discriminators.")}
            self.discriminators.load_state_dict({k[len("discriminators.") :]: v for k, v in ours.items()})
        else:
            self.load_state_dict(ours)


def halve(out: SubOutput, part: slice) -> SubOutput:
    """The fake or real half of a sub-output of the concatenated batch."""
    return SubOutput([f[part] for f in out.features], out.logits[part])


def check_pair(fake: torch.Tensor, real: torch.Tensor) -> None:
    """fake and real: waveforms [B, C, N] of one shape (metadata only, no sync)."""
    if fake.dim() != 3 or fake.shape != real.shape:
        raise ValueError(
            f"adversarial: expected fake and real waveforms [B, C, N] of one shape, got fake "
            f"{list(fake.shape)} and real {list(real.shape)}"
        )


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
    """Refuse, in one line, a saved state made for another discriminator."""
    saved = extra.get("fingerprint") if isinstance(extra, Mapping) else None
    if saved is None:
        raise StateMismatch(
            f"{where or 'state'}: no discriminator fingerprint in the saved state; it was not "
            f"saved by Adversarial.state_dict()"
        )
    if saved != adv.fingerprint:
        raise StateMismatch(
            f"{where or 'state'}: saved discriminator {saved} [{extra.get('discriminators')}] "
            f"does not match this one {adv.fingerprint} [{describe(adv)}]; use the config it "
            f"was saved with, or init = 'fresh'"
        )


def find_state(data: Any, depth: int = 0) -> tuple[Mapping[str, Any], str] | None:
    """The first mapping (searched a few levels deep) with a '<prefix>_extra_state' holding a fingerprint."""
    if not isinstance(data, Mapping) or depth > 4:
        return None
    for key, value in data.items():
        if isinstance(key, str) and key.endswith(EXTRA) and isinstance(value, Mapping) and "fingerprint" in value:
            return data, key[: -len(EXTRA)]
    for value in data.values():
        found = find_state(value, depth + 1)
        if found is not None:
            return found
    return None
