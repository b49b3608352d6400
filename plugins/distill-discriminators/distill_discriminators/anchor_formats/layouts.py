"""How each anchor lays out its discriminator checkpoint, as data: which section (module) of the file holds each
of our kinds, how a sub-discriminator's layers are named there, which buffers it derives from its options, and
the order of its discriminator optimizer's parameters.

Read from the anchors' own code (never copied): descript-audio-codec 1.0.0 ``dac/model/discriminator.py`` and
audiotools 0.7.2 ``ml/layers/base.py`` (``BaseModel.save``/``save_to_folder``); jik876/hifi-gan 4769534
``models.py`` and ``train.py``; bigvgan 2.4.1 ``discriminators.py`` and ``train.py``; audiocraft 1.3.0
``adversarial/discriminators/msstftd.py``, ``adversarial/losses.py``, ``modules/conv.py`` and
``solvers/builders.py``; vocos 0.1.0 ``discriminators.py`` and ``experiment.py``.
"""

from __future__ import annotations

import re
from functools import cache

import attrs

_INDEX = re.compile(r"\{(\w+)\}")


@cache
def _pattern(template: str) -> re.Pattern[str]:
    """``"convs.{j}.0"`` as a regex matching a whole layer path, each ``{name}`` an index group."""
    parts = _INDEX.split(template)
    regex = "".join(re.escape(p) if i % 2 == 0 else rf"(?P<{p}>\d+)" for i, p in enumerate(parts))
    return re.compile(regex + r"\Z")


def _fill(template: str, groups: dict[str, str]) -> str:
    return _INDEX.sub(lambda m: groups[m.group(1)], template)


@attrs.frozen
class Rename:
    """One layer of a sub-discriminator as the anchor names it and as we do (``{j}``: an index kept as is)."""

    anchor: str
    ours: str

    def to_ours(self, layer: str) -> str | None:
        """Our name of the anchor's layer path ``layer``, or None when this rule does not name it."""
        m = _pattern(self.anchor).match(layer)
        return _fill(self.ours, m.groupdict()) if m else None

    def to_anchor(self, layer: str) -> str | None:
        """The anchor's name of our layer path ``layer``, or None when this rule does not name it."""
        m = _pattern(self.ours).match(layer)
        return _fill(self.anchor, m.groupdict()) if m else None


@attrs.frozen
class Part:
    """One of our kinds in an anchor's file: the section (module state dict) holding its sub-discriminators as
    ``discriminators.{n}``, where in that list it starts (``order``: DAC lists its MPDs, then MSDs, then MRDs in
    one list), its layers' names, and the buffers the anchor derives from its options (regexes on a
    sub-discriminator's keys): Hann windows, CQT kernels, resampling filters, which are not weights. ``options``:
    our kind's options that compute what the anchor's does, where no preset has this part."""

    kind: str
    section: str
    renames: tuple[Rename, ...]
    fixed: tuple[str, ...] = ()
    order: int = 0
    title: str = ""
    options: dict[str, object] = attrs.field(factory=dict, hash=False)

    def to_ours(self, layer: str) -> str | None:
        """Our layer path for the anchor's, or None when no rule names it."""
        for rule in self.renames:
            found = rule.to_ours(layer)
            if found is not None:
                return found
        return None

    def to_anchor(self, layer: str) -> str | None:
        """The anchor's layer path for ours, or None when no rule names it."""
        for rule in self.renames:
            found = rule.to_anchor(layer)
            if found is not None:
                return found
        return None

    def is_fixed(self, key: str) -> bool:
        """Whether ``key`` (inside one sub-discriminator) is a buffer the anchor derives from its options."""
        return any(re.fullmatch(f, key) for f in self.fixed)


@attrs.frozen
class Format:
    """An anchor's checkpoint: its parts, the preset made from its setup, and its D optimizer's parameter
    groups, each the sections whose ``parameters()`` it chains, in that order."""

    name: str
    title: str
    preset: str
    parts: tuple[Part, ...]
    groups: tuple[tuple[str, ...], ...]

    def part(self, kind: str) -> Part | None:
        """Where this anchor keeps our ``kind``, or None if it has no such discriminator."""
        return next((p for p in self.parts if p.kind == kind), None)

    @property
    def sections(self) -> tuple[str, ...]:
        """Every section, in the file's order of first use."""
        return tuple(dict.fromkeys(p.section for p in self.parts))


SAME = (Rename("convs.{j}", "convs.{j}"), Rename("conv_post", "conv_post"))
BANDS = (Rename("band_convs.{b}.{j}", "band_convs.{b}.{j}"), Rename("conv_post", "conv_post"))
WINDOW = (r"spec_fn\.window",)

FORMATS: dict[str, Format] = {
    # dac.model.discriminator.Discriminator: one ModuleList (MPD per period, MSD per rate, MRD per FFT size),
    # every conv but conv_post wrapped as nn.Sequential(weight_norm(conv), LeakyReLU); AdamW over
    # discriminator.parameters(); save_to_folder writes weights.pth ({"state_dict", "metadata"}) and the
    # optimizer.pth / scheduler.pth train.py hands it.
    "dac": Format(
        "dac",
        "DAC",
        "dac",
        (
            Part("mpd", "", (Rename("convs.{j}.0", "convs.{j}"), Rename("conv_post", "conv_post")), order=0),
            Part(
                "mrd",
                "",
                (Rename("band_convs.{b}.{j}.0", "band_convs.{b}.{j}"), Rename("conv_post", "conv_post")),
                order=2,
            ),
        ),
        (("",),),
    ),
    # HiFi-GAN's do_XXXXXXXX: {"mpd", "msd", "optim_g", "optim_d", "steps", "epoch"};
    # optim_d = AdamW(chain(msd.parameters(), mpd.parameters())); ExponentialLR rebuilt from "epoch".
    "hifigan": Format(
        "hifigan",
        "HiFi-GAN",
        "hifigan_v1",
        (Part("mpd", "mpd", SAME), Part("msd", "msd", SAME)),
        (("msd", "mpd"),),
    ),
    # BigVGAN's do_XXXXXXXX: {"mpd", "mrd", ...} as HiFi-GAN's, "mrd" holding its MRD, MBD or MS-SB-CQTD;
    # optim_d = AdamW(chain(mrd.parameters(), mpd.parameters())).
    "bigvgan": Format(
        "bigvgan",
        "BigVGAN",
        "bigvgan_v2",
        (
            Part("mpd", "mpd", SAME),
            Part(
                "cqtd",
                "mrd",
                (Rename("conv_pres.{j}", "band_convs.{j}"), *SAME),
                fixed=(r"cqt_transform\..+", r"resample\..+"),
                title="MS-SB-CQTD",
            ),
            Part(
                "mrd",
                "mrd",
                BANDS,
                fixed=WINDOW,
                title="MBD",
                options={"padding": "center", "normalize_input": True, "first_layer_features": False},
            ),
        ),
        (("mrd", "mpd"),),
    ),
    # audiocraft's MultiScaleSTFTDiscriminator: NormConv2d holds its conv as ".conv"; torchaudio's Spectrogram
    # keeps its window as a buffer. AdversarialLoss.state_dict() nests it under "adversary." beside its
    # "optimizer" (Adam over adversary.parameters()); the solver's checkpoint under adv_losses["msstftd"].
    "audiocraft": Format(
        "audiocraft",
        "audiocraft (EnCodec's MS-STFTD)",
        "encodec",
        (
            Part(
                "msstftd",
                "",
                (Rename("convs.{j}.conv", "convs.{j}"), Rename("conv_post.conv", "conv_post")),
                fixed=(r"spec_transform\.window",),
            ),
        ),
        (("",),),
    ),
    # Vocos's Lightning checkpoint: state_dict with multiperioddisc.* and multiresddisc.* (among the
    # generator's), optimizer_states[0] = AdamW([{mpd params}, {mrd params}]), lr_schedulers[0] its schedule.
    "vocos": Format(
        "vocos",
        "Vocos",
        "vocos",
        (Part("mpd", "multiperioddisc", SAME), Part("mrd", "multiresddisc", BANDS, fixed=WINDOW)),
        (("multiperioddisc",), ("multiresddisc",)),
    ),
}
