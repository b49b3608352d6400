"""Which anchor wrote a checkpoint, told from its keys, and its discriminator parts pulled out of it: each
section's state dict (the anchor's names), its D optimizer's and schedule's states, its counters, metadata."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from ..adversarial import StateMismatch
from .files import DAC_EXTRAS, DAC_WEIGHTS
from .layouts import FORMATS

_DAC_KEY = re.compile(
    r"discriminators\.\d+\.(convs\.\d+|band_convs\.\d+\.\d+)\.0\.(weight_g|weight_v|bias|parametrizations\.)"
)
_AUDIOCRAFT_KEY = re.compile(r"(?P<prefix>(?:.*\.)?)discriminators\.\d+\.convs\.\d+\.conv\.")
VOCOS_SECTIONS = ("multiperioddisc", "multiresddisc")


@attrs.define
class AnchorState:
    """A checkpoint in an anchor's format, as read: ``sections`` maps each section (``""`` for a file that is
    one module's state) to its state dict in the anchor's names."""

    format: str
    sections: dict[str, dict[str, torch.Tensor]]
    optimizer: Mapping[str, Any] | None = None
    scheduler: Mapping[str, Any] | None = None
    epoch: int | None = None
    steps: int | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def title(self) -> str:
        """The anchor's name, as messages say it."""
        return FORMATS[self.format].title


def tensors(value: Any) -> dict[str, torch.Tensor] | None:
    """``value`` as a state dict (string keys, tensor values), or None."""
    if not isinstance(value, Mapping) or not value:
        return None
    if all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        return dict(value)
    return None


def mapping(value: Any) -> Mapping[str, Any] | None:
    """``value`` if it is a mapping, else None."""
    return value if isinstance(value, Mapping) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _first(values: Any) -> Mapping[str, Any] | None:
    """The first of a list of states (Lightning's optimizer_states, lr_schedulers), if it is a mapping."""
    return mapping(values[0]) if isinstance(values, (list, tuple)) and values else None


def _dac(data: Mapping[str, Any]) -> AnchorState | None:
    """DAC: a folder's files (files.read_checkpoint), weights.pth's {"state_dict", "metadata"}, or the state."""
    files = mapping(data.get(DAC_WEIGHTS)) if DAC_WEIGHTS in data else None
    weights = files if files is not None else data
    state = tensors(weights.get("state_dict")) if "state_dict" in weights else tensors(weights)
    if state is None or not any(_DAC_KEY.match(k) for k in state):
        return None
    metadata = mapping(weights.get("metadata")) or {}
    extras = {k: mapping(data.get(name)) for k, name in DAC_EXTRAS.items()} if files is not None else {}
    return AnchorState("dac", {"": state}, extras.get("optimizer"), extras.get("scheduler"), metadata=metadata)


def _do_file(data: Mapping[str, Any]) -> AnchorState | None:
    """HiFi-GAN's or BigVGAN's do_XXXXXXXX: {"mpd", "msd" | "mrd", "optim_d", "steps", "epoch", ...}."""
    mpd = tensors(data.get("mpd"))
    if mpd is None:
        return None
    for other, name in (("msd", "hifigan"), ("mrd", "bigvgan")):
        state = tensors(data.get(other))
        if state is not None:
            return AnchorState(
                name,
                {"mpd": mpd, other: state},
                mapping(data.get("optim_d")),
                None,
                epoch=_int(data.get("epoch")),
                steps=_int(data.get("steps")),
            )
    return None


def _vocos(data: Mapping[str, Any]) -> AnchorState | None:
    """Vocos's Lightning checkpoint ({"state_dict", "optimizer_states", "lr_schedulers", ...}) or its state."""
    lightning = "state_dict" in data
    state = mapping(data["state_dict"]) if lightning else data
    if state is None:
        return None
    sections = {
        name: {k[len(name) + 1 :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(name + ".")}
        for name in VOCOS_SECTIONS
    }
    if not any(sections.values()) or not all(
        isinstance(v, torch.Tensor) for s in sections.values() for v in s.values()
    ):
        return None
    return AnchorState(
        "vocos",
        {k: v for k, v in sections.items() if v},
        _first(data.get("optimizer_states")) if lightning else None,  # configure_optimizers: [opt_disc, opt_gen]
        _first(data.get("lr_schedulers")) if lightning else None,
        epoch=_int(data.get("epoch")) if lightning else None,
        steps=_int(data.get("global_step")) if lightning else None,
    )


def _audiocraft(data: Mapping[str, Any], depth: int = 0) -> AnchorState | None:
    """audiocraft's MS-STFTD state, alone, as AdversarialLoss's (``adversary.*`` beside ``optimizer``), or in a
    solver's checkpoint (``adv_losses``: ``msstftd.adversary.*``), a few levels deep."""
    prefixes = {m.group("prefix") for k in data if isinstance(k, str) and (m := _AUDIOCRAFT_KEY.match(k))}
    if len(prefixes) == 1:
        prefix = prefixes.pop()
        state = {k[len(prefix) :]: v for k, v in data.items() if isinstance(k, str) and k.startswith(prefix)}
        if tensors(state) is not None:
            owner = prefix[: -len("adversary.")] if prefix.endswith("adversary.") else None
            optimizer = mapping(data.get(owner + "optimizer")) if owner is not None else None
            return AnchorState("audiocraft", {"": state}, optimizer)
    if depth < 3:
        for value in data.values():
            if isinstance(value, Mapping):
                found = _audiocraft(value, depth + 1)
                if found is not None:
                    return found
    return None


DETECTORS = {"dac": _dac, "hifigan": _do_file, "bigvgan": _do_file, "vocos": _vocos, "audiocraft": _audiocraft}


def detect(data: Any, what: str, format: str | None = None) -> AnchorState:
    """The anchor checkpoint in ``data``, told from its keys (or read as ``format``); a StateMismatch in one line
    when it is none of them."""
    if format is not None and format not in FORMATS:
        raise StateMismatch(f"{what}: unknown checkpoint format {format!r}; expected one of {', '.join(FORMATS)}")
    if not isinstance(data, Mapping):
        raise StateMismatch(f"{what}: holds a {type(data).__name__}, not a checkpoint's dict of states")
    for name, detector in DETECTORS.items():
        if format is not None and name != format:
            continue
        found = detector(data)
        if found is not None and (format is None or found.format == format):
            return found
    keys = [str(k) for k in data]
    listed = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
    expected = (
        f"a {FORMATS[format].title} checkpoint"
        if format is not None
        else "a discriminator state of ours (Adversarial.state_dict()) or of DAC, HiFi-GAN, BigVGAN, audiocraft "
        "or Vocos"
    )
    raise StateMismatch(f"{what}: not {expected}; its top-level keys: {listed or 'none'}")
