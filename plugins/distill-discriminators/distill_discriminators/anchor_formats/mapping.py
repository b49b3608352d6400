"""Our discriminators' weights and an anchor's, key by key, by name: each of our keys has its place in the
anchor's file (section, sub-discriminator ``n``, layer, parameter), read or written there. What does not fit
is said in one line, with what the file holds."""

from __future__ import annotations

import re

import attrs
import torch
from torch import nn

from .detect import AnchorState
from .layouts import Format, Part

# weight norm as torch.nn.utils.weight_norm names it (the anchors' code) and as the parametrisation does (ours)
WEIGHT_NORM = {
    "parametrizations.weight.original0": ("weight_g", "parametrizations.weight.original0"),
    "parametrizations.weight.original1": ("weight_v", "parametrizations.weight.original1"),
}
_SUB = re.compile(r"discriminators\.(\d+)\.(.+)")


@attrs.frozen
class Slot:
    """One of our weights or buffers and its place in the anchor's file: ``keys`` are the names it may have in
    ``section`` (the first is what the anchor's code writes), ``n`` its sub-discriminator there."""

    ours: str
    section: str
    keys: tuple[str, ...]
    n: int
    position: int
    param: bool


@attrs.frozen
class Sub:
    """One of our sub-discriminators and its place: ``discriminators[k]``, its ``i``-th, the anchor's ``n``-th."""

    k: int
    i: int
    n: int
    module: nn.Module
    part: Part


def split(name: str) -> tuple[str, str]:
    """A key inside a sub-discriminator as (layer path, parameter): ``convs.3.parametrizations.weight.original0``
    -> ``("convs.3", "parametrizations.weight.original0")``."""
    head, sep, tail = name.partition(".parametrizations.")
    if sep:
        return head, "parametrizations." + tail
    layer, _, leaf = name.rpartition(".")
    return layer, leaf


def children(disc: nn.Module) -> nn.ModuleList:
    """A discriminator's sub-discriminators (every kind keeps them as ``discriminators``)."""
    subs = getattr(disc, "discriminators", None)
    return subs if isinstance(subs, nn.ModuleList) else nn.ModuleList()


def label(section: str, key: str) -> str:
    """A key of the anchor's file as a user finds it there."""
    return f"{section}.{key}" if section else key


def listed(items: list[str], first: int = 3) -> str:
    """The first few items (the caller says how many there are)."""
    return ", ".join(items[:first]) + (", ..." if len(items) > first else "")


def plan(discs: nn.ModuleList, fmt: Format) -> tuple[list[Slot], list[Sub], list[str]]:
    """Where each of our keys lives in ``fmt``'s files; problems where our discriminators have no place there."""
    problems: list[str] = []
    parts: list[Part | None] = [fmt.part(str(getattr(d, "name", ""))) for d in discs]
    for k, (d, part) in enumerate(zip(discs, parts)):
        if part is None:
            kinds = ", ".join(sorted({p.kind for p in fmt.parts}))
            problems.append(
                f"discriminators[{k}] (kind {getattr(d, 'name', '?')!r}) has no place in it (it holds {kinds})"
            )
    places = [(p.section, p.order) for p in parts if p is not None]
    for place in sorted(set(places)):
        if places.count(place) > 1:
            problems.append(
                f"{places.count(place)} discriminators would share its {place[0] or 'discriminator'} module"
            )
    params = {name for name, _ in discs.named_parameters()}
    slots: list[Slot] = []
    subs: list[Sub] = []
    for k, (disc, part) in enumerate(zip(discs, parts)):
        if part is None:
            continue
        offset = sum(
            len(children(d))
            for d, p in zip(discs, parts)
            if p is not None and p.section == part.section and p.order < part.order
        )
        outside = [key for key in disc.state_dict() if not key.startswith("discriminators.")]
        if outside:
            problems.append(f"discriminators[{k}] keeps {listed(outside)} outside its sub-discriminators")
        for i, sub in enumerate(children(disc)):
            n = offset + i
            subs.append(Sub(k, i, n, sub, part))
            for position, name in enumerate(sub.state_dict()):
                layer, leaf = split(name)
                theirs = part.to_anchor(layer)
                ours = f"{k}.discriminators.{i}.{name}"
                if theirs is None:
                    problems.append(f"{ours} has no name in it")
                    continue
                keys = tuple(f"discriminators.{n}.{theirs}.{alt}" for alt in WEIGHT_NORM.get(leaf, (leaf,)))
                slots.append(Slot(ours, part.section, keys, n, position, ours in params))
    return slots, subs, problems


def is_fixed(fmt: Format, section: str, key: str) -> bool:
    """Whether ``key`` of ``section`` is a buffer the anchor derives from its options."""
    m = _SUB.fullmatch(key)
    return m is not None and any(p.section == section and p.is_fixed(m.group(2)) for p in fmt.parts)


def shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def recorded_problems(state: AnchorState, subs: list[Sub]) -> list[str]:
    """Options the file records (its windows' lengths) that our discriminators do not share: weights of the
    same shapes made for other FFT sizes would load, and mean something else. (DAC's weights.pth records its
    class's default arguments, not those it was built with: ``BaseModel.save`` reads attributes that
    ``Discriminator`` does not keep; so its periods and FFT sizes are not read from it.)"""
    problems: list[str] = []
    for s in subs:
        section = state.sections.get(s.part.section, {})
        for key, value in section.items():
            m = _SUB.fullmatch(key)
            if m is None or int(m.group(1)) != s.n or not key.endswith(".window") or not s.part.is_fixed(m.group(2)):
                continue
            length, option = window_option(s)
            if length is not None and value.numel() != length:
                problems.append(
                    f"{label(s.part.section, key)} is a {value.numel()}-point window, where discriminators[{s.k}] has "
                    f"{option}[{s.i}] = {length}"
                )
    return problems


def window_option(s: Sub) -> tuple[int | None, str]:
    """Our window length for sub-discriminator ``s`` and the option that sets it."""
    if s.part.kind == "mrd":
        return int(getattr(s.module, "fft_size", 0)) or None, "fft_sizes"
    window = getattr(s.module, "window", None)
    return (int(window.numel()) if isinstance(window, torch.Tensor) else None), "win_lengths"


@attrs.frozen
class Fit:
    """The weights an anchor's file gives our discriminators (by our names), or why they do not fit."""

    weights: dict[str, torch.Tensor]
    slots: list[Slot]
    problems: list[str]


def read_weights(discs: nn.ModuleList, fmt: Format, state: AnchorState) -> Fit:
    """Each of our keys read from its place in ``state``: missing, unexpected and misshapen keys, and options
    the file records that ours do not share, are problems."""
    slots, subs, problems = plan(discs, fmt)
    ours = discs.state_dict()
    consumed: dict[str, set[str]] = {}
    weights: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    misshapen: list[str] = []
    for slot in slots:
        section = state.sections.get(slot.section, {})
        key = next((k for k in slot.keys if k in section), None)
        if key is None:
            missing.append(label(slot.section, slot.keys[0]))
            continue
        consumed.setdefault(slot.section, set()).add(key)
        if section[key].shape != ours[slot.ours].shape:
            misshapen.append(f"{label(slot.section, key)} {shape(section[key])} for our {shape(ours[slot.ours])}")
        weights[slot.ours] = section[key]
    unexpected = [
        label(name, key)
        for name, section in state.sections.items()
        for key in section
        if key not in consumed.get(name, set()) and not is_fixed(fmt, name, key)
    ]
    if missing:
        problems.append(f"missing {len(missing)} keys ({listed(missing)})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys ({listed(unexpected)})")
    if misshapen:
        problems.append(f"{len(misshapen)} keys of another shape ({listed(misshapen, 2)})")
    if not problems:
        problems += recorded_problems(state, subs)
    return Fit(weights, slots, problems)


def fixed_buffers(sub: Sub, template: AnchorState | None) -> dict[str, torch.Tensor] | None:
    """The buffers the anchor derives from its options, for our sub-discriminator ``sub``, by the anchor's keys
    inside it: Hann windows made here as torchaudio's Spectrogram makes them (``torch.hann_window(n)``); others
    (BigVGAN's CQT kernels and resampling filter) copied from ``template``, or None when it lacks them."""
    part = sub.part
    if not part.fixed:
        return {}
    if part.kind in ("mrd", "msstftd"):
        length, _ = window_option(sub)
        name = "spec_fn.window" if part.kind == "mrd" else "spec_transform.window"
        return {name: torch.hann_window(length or 0)}
    if template is None:
        return None
    prefix = f"discriminators.{sub.n}."
    section = template.sections.get(part.section, {})
    found = {
        k[len(prefix) :]: v for k, v in section.items() if k.startswith(prefix) and part.is_fixed(k[len(prefix) :])
    }
    return found or None


def write_weights(
    discs: nn.ModuleList, fmt: Format, template: AnchorState | None = None
) -> tuple[dict[str, dict[str, torch.Tensor]], list[Slot], list[str]]:
    """Our weights in the anchor's names, each section in the anchor's module order (sub-discriminator by
    sub-discriminator, its fixed buffers first), with the slots that placed them and any problems."""
    slots, subs, problems = plan(discs, fmt)
    ours = discs.state_dict()
    rows: dict[str, list[tuple[int, int, str, torch.Tensor]]] = {s: [] for s in fmt.sections}
    for sub in subs:
        buffers = fixed_buffers(sub, template)
        if buffers is None:
            problem = (
                f"discriminators[{sub.k}] ({sub.part.title or sub.part.kind}) has buffers in the anchor's module that "
                f"only its code makes (its transforms' kernels and filters): pass template = a checkpoint of its own"
            )
            if problem not in problems:
                problems.append(problem)
            continue
        rows[sub.part.section] += [(sub.n, -1, f"discriminators.{sub.n}.{k}", v.clone()) for k, v in buffers.items()]
    for slot in slots:
        rows[slot.section].append((slot.n, slot.position, slot.keys[0], ours[slot.ours].detach().clone()))
    sections = {
        name: {key: value for _, _, key, value in sorted(entries, key=lambda r: (r[0], r[1]))}
        for name, entries in rows.items()
        if entries
    }
    return sections, slots, problems
