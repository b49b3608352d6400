"""The demo models ``distill-loss train --model NAME`` trains: one run function each, and which wrote a folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from distill_core.seed.adapter import VAEAdapter
from distill_core.training.run import DemoSettings, RunExistsError, SettingsError, run_demo
from distill_core.training.spectrogram import WaveformViews
from distill_core.training.vocoder import VOCODER_FILE, VocoderAdapter
from distill_core.training.vocoder_run import run_vocoder

RunFunction = Callable[..., Path]  # (settings, progress=, notify=) -> the run folder


@attrs.frozen
class DemoModel:
    """A model the CLI can train: its run function, the file that marks its run folders, what they hold, and
    its adapter (what ``provides()`` and ``carries_gradient()`` say is what a loss config may read)."""

    run: RunFunction
    marker: str
    holds: str
    adapter: Callable[[], Any]


MODELS: dict[str, DemoModel] = {
    "vae": DemoModel(
        run_demo,
        "spectrogram.json",
        "history.json, config.toml, lock.json, spectrogram.json, losses.png, last.pt, best.pt, samples/",
        lambda: VAEAdapter(WaveformViews),  # type: ignore[arg-type]  # the class for its declared keys, never called
    ),  # the views class: its keys, no spectrogram settings
    "vocoder": DemoModel(
        run_vocoder,
        VOCODER_FILE,
        "history.json, config.toml, lock.json, vocoder.json, losses.png, last.pt, best.pt, samples/",
        VocoderAdapter,
    ),
}


def demo_model(name: str) -> DemoModel:
    """The model ``--model`` names; a SettingsError lists the others."""
    if name not in MODELS:
        raise SettingsError(f"--model: {name!r} is not a demo model; expected one of {', '.join(MODELS)}")
    return MODELS[name]


def model_of_run(folder: Path) -> str:
    """Which demo model a run folder holds: the vocoder's when vocoder.json is there, else the VAE's (whose
    oldest runs predate spectrogram.json)."""
    return "vocoder" if (Path(folder) / VOCODER_FILE).is_file() else "vae"


def train_model(
    name: str, settings: DemoSettings, progress: bool = True, notify: Callable[[str], None] | None = None
) -> Path:
    """Train the demo model ``name`` into ``settings``' run folder, refusing a folder or a checkpoint that
    belongs to another model (one folder never holds two models' files)."""
    model = demo_model(name)
    run_dir = Path(settings.out) / settings.name
    for other, spec in MODELS.items():
        if other != name and (run_dir / spec.marker).is_file():
            raise RunExistsError(
                f"{run_dir}: holds a {other} run ({spec.marker}); --model {name} does not write "
                f"into it, even with --overwrite; choose another --name"
            )
    if settings.resume is not None:
        saved = model_of_run(Path(settings.resume).parent)
        if saved != name:
            raise SettingsError(
                f"--resume {settings.resume}: a checkpoint of a {saved} run; continue it with --model {saved}"
            )
    return model.run(settings, progress=progress, notify=notify)
