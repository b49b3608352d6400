"""Bring your own checkpoint: the anchors' discriminator checkpoints into an Adversarial, and ours out in their
formats, mapped key by key by name.

Formats (``format``): ``"dac"`` (descript-audio-codec's Discriminator: its state dict, ``weights.pth`` or the
folder ``save_to_folder`` writes, with ``optimizer.pth`` / ``scheduler.pth``), ``"hifigan"`` and ``"bigvgan"``
(``do_XXXXXXXX``: ``mpd``, ``msd`` or ``mrd``, ``optim_d``, ``steps``, ``epoch``), ``"audiocraft"`` (the
MS-STFTD's state, AdversarialLoss's, or a solver checkpoint's ``adv_losses``), ``"vocos"`` (the Lightning
checkpoint: ``state_dict`` with ``multiperioddisc.*`` / ``multiresddisc.*``, ``optimizer_states``,
``lr_schedulers``). A file is read with ``torch.load(weights_only=True)``: a pickle is never executed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..adversarial import Adversarial, StateMismatch
from .detect import AnchorState, detect
from .files import file_problem, read_checkpoint
from .hints import base_preset, describe, suggest, survey
from .layouts import FORMATS, Format
from .mapping import read_weights, write_weights
from .optim import WHERE, read_optimizer, read_schedule, write_optimizer, write_schedule

__all__ = [
    "FORMATS",
    "AnchorState",
    "detect",
    "export_anchor_checkpoint",
    "file_problem",
    "load_anchor_checkpoint",
    "read_checkpoint",
    "save_anchor_checkpoint",
]

PRESET_FORMAT = {fmt.preset: name for name, fmt in FORMATS.items()}


def _source(source: str | os.PathLike[str] | Mapping[str, Any], what: str | None) -> tuple[Any, str]:
    """The checkpoint's data and how messages name it."""
    if isinstance(source, (str, os.PathLike)):
        return read_checkpoint(source, (what or "init_from").split(" = ")[0]), what or f"init_from = {str(source)!r}"
    return source, what or "checkpoint"


def mismatch(adv: Adversarial, state: AnchorState, problems: list[str], what: str) -> StateMismatch:
    """The one line a checkpoint that does not fit gets: the anchor it is from (and the configured preset's,
    where they differ), what does not fit, and the preset or options under which it would."""
    head = f"{what}: this is a {state.title} checkpoint ({describe(survey(FORMATS[state.format], state))})"
    preset = adv.config.preset
    other = PRESET_FORMAT.get(preset or "", state.format)
    if preset is not None and other != state.format and preset != base_preset(FORMATS[state.format]):
        head += f", not a {FORMATS[PRESET_FORMAT[preset]].title} one as preset = {preset!r} reads"
    hint = suggest(state)
    tail = f"{hint.text} fits it" if hint.config is not None else hint.text
    return StateMismatch(f"{head}; it does not fit the configured discriminators: {'; '.join(problems)}; {tail}")


def load_state(adv: Adversarial, state: AnchorState, *, resume: bool, what: str) -> None:
    """D's weights (and, to ``resume``, its optimizer, schedule and update count) from an anchor's checkpoint;
    everything is checked before anything is loaded."""
    fmt = FORMATS[state.format]
    fit = read_weights(adv.discriminators, fmt, state)
    if fit.problems:
        raise mismatch(adv, state, fit.problems, what)
    optimizer = schedule = None
    if resume:
        if state.optimizer is None:
            raise StateMismatch(
                f"{what}: init = 'resume' needs D's optimizer state, and this {state.title} checkpoint holds none "
                f"({WHERE[fmt.name]}): use init = 'weights_only'"
            )
        optimizer = read_optimizer(adv, fmt, fit.slots, state.optimizer, what)
        schedule = read_schedule(adv, fmt, state.scheduler, state.epoch, what, state.steps)
    adv.discriminators.load_state_dict(fit.weights)
    if optimizer is not None:
        adv.optimizer.load_state_dict(optimizer)
        steps = [float(s["step"]) for s in optimizer["state"].values()]
        adv.updates.fill_(int(max(steps)) if steps else state.steps or 0)  # Adam counts D's steps taken
        if schedule is not None and adv.scheduler is not None:
            adv.scheduler.load_state_dict({**schedule, "_last_lr": [adv.optimizer.param_groups[0]["lr"]]})


def load_anchor_checkpoint(
    adv: Adversarial,
    source: str | os.PathLike[str] | Mapping[str, Any],
    format: str | None = None,
    *,
    resume: bool = False,
    what: str | None = None,
) -> str:
    """Start ``adv``'s discriminators from ``source`` (a path, or a checkpoint already loaded), in ours or an
    anchor's format (``format``, or told from its keys): the weights, and with ``resume`` the optimizer state,
    schedule and update count. Returns the format read (``"distill"`` for ours)."""
    data, where = _source(source, what)
    return adv.load_initial(data, weights_only=not resume, format=format, what=where)


def _template(
    template: AnchorState | Mapping[str, Any] | str | os.PathLike[str] | None, fmt: Format
) -> AnchorState | None:
    """A checkpoint of the anchor's own, for the fixed buffers only its code makes."""
    if template is None or isinstance(template, AnchorState):
        return template
    data, where = _source(template, "template")
    return detect(data, where, fmt.name)


def export_anchor_checkpoint(
    adv: Adversarial, format: str, *, template: AnchorState | Mapping[str, Any] | str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """``adv``'s discriminators, optimizer and schedule in an anchor's format, as the files its code saves
    (relative path -> object for ``torch.save``), for its own classes to load with ``strict=True``.

    ``template``: a checkpoint of the anchor's own, from which the buffers only its code makes (BigVGAN's CQT
    kernels and resampling filter) are copied; Hann windows are made here."""
    if format not in FORMATS:
        raise StateMismatch(f"export: unknown checkpoint format {format!r}; expected one of {', '.join(FORMATS)}")
    fmt = FORMATS[format]
    sections, slots, problems = write_weights(adv.discriminators, fmt, _template(template, fmt))
    if problems:
        raise StateMismatch(
            f"export as {fmt.title}: {'; '.join(problems[:3])}"
            + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
        )
    optimizer, schedule = write_optimizer(adv, fmt, slots), write_schedule(adv, fmt)
    steps = int(adv.updates)
    epoch = adv.scheduler.last_epoch if adv.scheduler is not None and adv.settings.scheduler.interval == "epoch" else 0
    if format == "dac":
        kwargs = dac_kwargs(adv)
        files: dict[str, Any] = {
            "discriminator/weights.pth": {"state_dict": sections[""], "metadata": {"kwargs": kwargs}},
            "discriminator/optimizer.pth": optimizer,
        }
        if schedule is not None:
            files["discriminator/scheduler.pth"] = schedule
        return files
    if format in ("hifigan", "bigvgan"):
        other = "msd" if format == "hifigan" else "mrd"
        return {
            f"do_{steps:08d}": {
                "mpd": sections.get("mpd", {}),
                other: sections.get(other, {}),
                "optim_d": optimizer,
                "steps": steps,
                "epoch": epoch,
            }
        }
    if format == "audiocraft":
        return {"msstftd.th": {**{f"adversary.{k}": v for k, v in sections[""].items()}, "optimizer": optimizer}}
    state = {f"{section}.{k}": v for section, weights in sections.items() for k, v in weights.items()}
    return {
        "discriminators.ckpt": {
            "state_dict": state,
            "optimizer_states": [optimizer],
            "lr_schedulers": [schedule] if schedule is not None else [],
            "global_step": steps,
            "epoch": epoch,
        }
    }


def dac_kwargs(adv: Adversarial) -> dict[str, Any]:
    """The init arguments DAC's ``BaseModel.save`` records, so ``Discriminator.load`` rebuilds it."""
    kwargs: dict[str, Any] = {"rates": [], "periods": [], "fft_sizes": [], "sample_rate": 44100}
    for d in adv.discriminators:
        config: Any = getattr(d, "config", None)
        if getattr(d, "name", "") == "mpd":
            kwargs["periods"] = list(config.periods)
        if getattr(d, "name", "") == "mrd":
            kwargs["fft_sizes"] = list(config.fft_sizes)
            kwargs["bands"] = [tuple(b) for b in config.bands]
    return kwargs


def save_anchor_checkpoint(
    adv: Adversarial,
    format: str,
    folder: str | os.PathLike[str],
    *,
    template: AnchorState | Mapping[str, Any] | str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write ``export_anchor_checkpoint``'s files under ``folder`` (DAC's as ``save_to_folder(folder)`` lays them
    out: ``folder/discriminator/weights.pth`` ...); returns their paths."""
    written = []
    for name, obj in export_anchor_checkpoint(adv, format, template=template).items():
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, path)
        written.append(path)
    return written
