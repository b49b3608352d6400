"""What an anchor's file holds (its sub-discriminators, their kinds and the options their shapes show), and the
preset or options under which ours would take it: the second half of a mismatch's one line."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from ..presets import PRESETS
from .detect import AnchorState
from .layouts import FORMATS, Format, Part
from .mapping import WEIGHT_NORM, split

_SUB = re.compile(r"discriminators\.(\d+)\.(.+)")
PERIODS = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
BASE_CHANNELS = {"mpd": ("convs.0", 32), "msd": ("convs.0", 128), "mrd": ("band_convs.0.0", 32)}
# what a file's sub-discriminator that no kind of ours matches is, where an anchor has one
UNSUPPORTED = {
    "dac": "DAC's MSD (its `rates`; a resampling 1-D discriminator), which has no kind here",
    "bigvgan": "BigVGAN-v1's MRD (UnivNet's, on magnitude spectrograms), which has no kind here",
    "vocos": "Vocos's conditional discriminators (num_embeddings, an `emb` table), which have no kind here",
}


@attrs.define
class Group:
    """Consecutive sub-discriminators of one kind in one section of the file, with what their shapes show."""

    section: str
    part: Part | None
    count: int = 0
    options: dict[str, Any] = attrs.field(factory=dict)
    windows: list[int] = attrs.field(factory=list)


def ours_named(part: Part, keys: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """A sub-discriminator's tensors by our names (fixed buffers left out), or None if a layer has none."""
    out = {}
    theirs = {alts[0]: ours for ours, alts in WEIGHT_NORM.items()}
    for key, value in keys.items():
        if part.is_fixed(key):
            continue
        layer, leaf = split(key)
        ours_layer = part.to_ours(layer)
        if ours_layer is None:
            return None
        spectral = f"{layer}.weight_orig" in keys  # spectral norm's weight_v is its power-iteration vector
        out[f"{ours_layer}.{leaf if spectral else theirs.get(leaf, leaf)}"] = value
    return out


def weight(named: Mapping[str, torch.Tensor], layer: str) -> torch.Tensor | None:
    """A conv's weight (its direction, under weight norm) by our layer name."""
    for leaf in ("weight", "parametrizations.weight.original1", "weight_orig"):
        if f"{layer}.{leaf}" in named:
            return named[f"{layer}.{leaf}"]
    return None


def looks_like(kind: str, named: Mapping[str, torch.Tensor]) -> bool:
    """Whether tensors by our names have the layout of our ``kind`` (not only its layer names)."""
    if kind in ("mrd", "cqtd"):
        first = weight(named, "band_convs.0.0" if kind == "mrd" else "convs.0")
        return first is not None and any(k.startswith("band_convs.") for k in named)
    first = weight(named, "convs.0")
    if first is None or any(k.startswith("band_convs.") for k in named):
        return False
    if kind == "mpd":
        return first.dim() == 4 and first.shape[1] == 1 and first.shape[-1] == 1
    if kind == "msd":
        return first.dim() == 3
    return first.dim() == 4 and first.shape[1] == 2  # msstftd: real and imaginary parts as channels


def identify(
    fmt: Format, section: str, keys: Mapping[str, torch.Tensor]
) -> tuple[Part, dict[str, torch.Tensor]] | None:
    """Which of our kinds a sub-discriminator of the file is, with its tensors by our names."""
    for part in sorted((p for p in fmt.parts if p.section == section), key=lambda p: p.order):
        named = ours_named(part, keys)
        if named is not None and looks_like(part.kind, named):
            return part, named
    return None


def sub_options(kind: str, named: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The options of ours that a sub-discriminator's shapes show (channel width, kernel, norm, counts)."""
    options: dict[str, Any] = {}
    if kind in BASE_CHANNELS:
        layer, base = BASE_CHANNELS[kind]
        w = weight(named, layer)
        if w is not None:
            options["width"] = w.shape[0] / base
        if kind == "mpd" and w is not None:
            options["kernel_size"] = int(w.shape[2])
            options["norm"] = (
                "spectral"
                if f"{layer}.weight_orig" in named
                else "weight"
                if f"{layer}.parametrizations.weight.original1" in named
                else "none"
            )
        if kind == "msd":
            options["spectral"] = f"{layer}.weight_orig" in named
        if kind == "mrd":
            options["bands"] = len({k.split(".")[1] for k in named if k.startswith("band_convs.")})
    else:  # msstftd, cqtd: their own channel options
        convs = sorted({int(k.split(".")[1]) for k in named if k.startswith("convs.")})
        channels = [int(w.shape[0]) for j in convs if (w := weight(named, f"convs.{j}")) is not None]
        if channels:
            options["filters"] = channels[0]
            if len(channels) > 1 and channels[1] > channels[0]:
                options["filters_scale"] = channels[1] // channels[0]
        options["dilations"] = max(0, len(convs) - 2)
        if kind == "cqtd":
            options["n_octaves"] = len({k.split(".")[1] for k in named if k.startswith("band_convs.")})
    return options


def survey(fmt: Format, state: AnchorState) -> list[Group]:
    """The file's sub-discriminators, section by section, grouped by kind and options."""
    groups: list[Group] = []
    for section in [*fmt.sections, *(s for s in state.sections if s not in fmt.sections)]:
        subs: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in state.sections.get(section, {}).items():
            m = _SUB.fullmatch(key)
            if m is not None:
                subs.setdefault(int(m.group(1)), {})[m.group(2)] = value
        for n in sorted(subs):
            found = identify(fmt, section, subs[n])
            part, named = found if found is not None else (None, {})
            options = sub_options(part.kind, named) if part is not None else {}
            window = next((v.numel() for k, v in subs[n].items() if k.endswith(".window")), None)
            if part is not None and part.kind == "msd" and groups and groups[-1].part == part:
                options.pop("spectral")  # only scale 0's norm is an option (spectral_first)
            last = groups[-1] if groups else None
            if (
                last is not None
                and last.section == section
                and last.part == part
                and (part is None or all(last.options.get(k) == v for k, v in options.items()))
            ):
                last.count += 1
            else:
                last = Group(section, part, 1, options)
                groups.append(last)
            if window is not None:
                last.windows.append(int(window))
    return groups


def describe(groups: list[Group]) -> str:
    """What the file holds, briefly: ``MPD x5 + CQTD x3``."""
    return " + ".join(f"{(g.part.title or g.part.kind.upper()) if g.part else 'unknown'} x{g.count}" for g in groups)


@attrs.frozen
class Suggestion:
    """A config (AdversarialConfig's fields) under which ours takes the file, and how a message says it."""

    config: dict[str, Any] | None
    text: str


def _periods(count: int, preset: tuple[int, ...]) -> tuple[list[int], bool]:
    """MPD's periods for ``count`` sub-discriminators (no file records them): the preset's if it has as many,
    else guessed (then True)."""
    if len(preset) == count:
        return list(preset), False
    return list(PERIODS[:count]) if count <= len(PERIODS) else list(range(2, count + 2)), True


def _sizes(saved: list[int], count: int, preset: list[int], fallback: list[int]) -> tuple[list[int], bool]:
    """A per-scale size list: the file's, the preset's if it has as many, or guessed (then True)."""
    if len(saved) == count:
        return saved, False
    if len(preset) == count:
        return preset, False
    return (fallback * count)[:count], True


def adjust(spec: dict[str, Any], group: Group, state: AnchorState) -> tuple[dict[str, Any], list[str], float]:
    """``spec`` (a preset's entry) changed to fit ``group``; the changes as a message says them; the width."""
    assert group.part is not None  # an unknown group has no suggestion
    kind, count, found = group.part.kind, group.count, group.options
    options = dict(spec.get("options", {}))
    said: list[str] = []

    def put(key: str, value: Any, guessed: bool = False) -> None:
        if options.get(key, default_of(kind, key)) != value:
            options[key] = value
            said.append(f"{key} = {value}" + (" (as many; the file does not record which)" if guessed else ""))

    if kind == "mpd":
        periods, guessed = _periods(count, tuple(options.get("periods", PERIODS[:5])))
        put("periods", periods, guessed)
        put("kernel_size", found.get("kernel_size", 5))
        put("norm", found.get("norm", "weight"))
    elif kind == "msd":
        put("scales", count)
        put("spectral_first", bool(found.get("spectral", False)))
    elif kind == "mrd":
        sizes, guessed = _sizes(
            group.windows, count, list(options.get("fft_sizes", [2048, 1024, 512])), [2048, 1024, 512, 256, 128, 64]
        )
        put("fft_sizes", sizes, guessed)
        if found.get("bands", 5) != 5:
            said.append(f"bands = <{found['bands']} (low, high) bands; the file does not record their edges>")
    elif kind == "msstftd":
        wins, guessed = _sizes(group.windows, count, list(options.get("win_lengths", [])), [1024])
        if guessed or wins != list(options.get("win_lengths", [])):
            put("win_lengths", wins, guessed)
            put("n_ffts", wins, guessed)
            put("hop_lengths", [w // 4 for w in wins], guessed)
        for key in ("filters", "filters_scale"):
            if key in found:
                put(key, found[key])
        put("dilations", [2**j for j in range(found.get("dilations", 3))])
    elif kind == "cqtd":
        octaves = found.get("n_octaves", 9)
        hops, guessed = _sizes([], count, list(options.get("hop_lengths", [512, 256, 256])), [256])
        put("hop_lengths", hops, guessed)
        put(
            "bins_per_octaves", _sizes([], count, list(options.get("bins_per_octaves", [24, 36, 48])), [24])[0], guessed
        )
        put("n_octaves", [octaves] * count)
        for key in ("filters", "filters_scale"):
            if key in found:
                put(key, found[key])
        put("dilations", [2**j for j in range(found.get("dilations", 3))])
    return {**spec, "options": options}, said, float(found.get("width", 1.0))


def default_of(kind: str, key: str) -> Any:
    """Our kind's default for option ``key``."""
    from ..hookspecs import discriminators  # the registry of kinds: loaded when a message needs it

    fields = attrs.fields_dict(discriminators().get(kind).config_class)
    if key not in fields:
        return None
    default: Any = fields[key].default
    value = default.factory() if isinstance(default, attrs.Factory) else default  # type: ignore[arg-type]
    return list(value) if isinstance(value, tuple) else value


def base_preset(fmt: Format) -> str:
    """The preset made from the anchor's setup (every format has one)."""
    return fmt.preset


def suggest(state: AnchorState) -> Suggestion:
    """The anchor's preset, with the options the file's shapes (and saved options) need, or why none fits."""
    fmt = FORMATS[state.format]
    groups = survey(fmt, state)
    unknown = [g for g in groups if g.part is None]
    if unknown or not groups:
        why = UNSUPPORTED.get(state.format, "an unknown sub-discriminator") if unknown else "no sub-discriminators"
        return Suggestion(None, f"no preset or options here fit it: it holds {why}")
    base = base_preset(fmt)
    preset: list[dict[str, Any]] = copy.deepcopy(PRESETS[base]["discriminators"])
    specs: list[dict[str, Any]] = []
    said: list[str] = []
    widths: list[float] = []
    for g in groups:
        assert g.part is not None
        kind = g.part.kind
        spec: dict[str, Any] = next(
            (s for s in preset if s["kind"] == kind), {"kind": kind, "options": dict(g.part.options)}
        )
        spec, changes, width = adjust(spec, g, state)
        index = len(specs)
        specs.append(spec)
        widths.append(width)
        said += [f"discriminators[{index}].options.{c}" for c in changes]
    config: dict[str, Any] = {"preset": base}
    kinds_match = [s["kind"] for s in specs] == [s["kind"] for s in preset]
    if said or not kinds_match:
        config["discriminators"] = specs
    if len(set(widths)) == 1:
        if widths[0] != 1.0:
            config["width"] = widths[0]
    else:
        for spec, width in zip(specs, widths):
            spec["options"]["width"] = width
        said += [f"discriminators[{i}].options.width = {w}" for i, w in enumerate(widths)]
        config["discriminators"] = specs
    text = f"preset = {base!r}"
    if not kinds_match:
        text += " with discriminators = [" + ", ".join(repr(s["kind"]) for s in specs) + "]"
    if said:
        text += (" and " if not kinds_match else " with ") + ", ".join(said)
    if "width" in config:
        text += f", width = {config['width']}"
    return Suggestion(config, text)
