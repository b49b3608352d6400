"""The commands that write a run folder: ``train`` a demo model (or resume a run), ``import-seed`` a seed run."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource


@click.command("train")
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--model",
    default="vae",
    show_default=True,
    help="vae: the spectrogram VAE; vocoder: the mel-to-waveform vocoder (docs/training.md).",
)
@click.option("--data", type=click.Path(path_type=Path), help="Folder of WAV files (default: a synthetic corpus).")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True)
@click.option("--name", default="demo", show_default=True, help="Run folder name under --out.")
@click.option(
    "--clips",
    type=click.IntRange(min=2),
    default=96,
    show_default=True,
    help="Synthetic clips to generate when --data is not given (vocoder: segments per epoch).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--mel-bins", type=int, help="Mel-scale the magnitude to this many bands (e.g. 128).")
@click.option(
    "--resume",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Continue from a checkpoint, e.g. runs/demo/last.pt, with the run's own options (run.json), run folder "
    "and, with no CONFIG, config.toml; an option given that differs is refused (see --change-options).",
)
@click.option("--overwrite", is_flag=True, help="Replace a run already in the run folder (refused by default).")
@click.option(
    "--force-config",
    is_flag=True,
    help="Resume with a changed loss config: starts a new best-tracking segment, recorded in the history.",
)
@click.option(
    "--change-options",
    is_flag=True,
    help="Resume with options (--epochs, --batch-size, ...) other than the run's run.json; recorded there.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Torch's CPU threads (default: torch's own count); kept in run.json, as their count changes the last bits.",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option(
    "--no-tensorboard", is_flag=True, help="Write no TensorBoard events (written when tensorboard is installed)."
)
def train_cmd(
    config: Path | None,
    model: str,
    data: Path | None,
    epochs: int,
    out: Path,
    name: str,
    clips: int,
    batch_size: int,
    seed: int,
    device: str,
    mel_bins: int | None,
    resume: Path | None,
    overwrite: bool,
    force_config: bool,
    change_options: bool,
    threads: int | None,
    no_progress: bool,
    no_tensorboard: bool,
) -> None:
    """Train a demo model with the combined loss: the VAE on (magnitude, IF) spectrograms, or the vocoder."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    import shlex
    import signal
    import warnings

    from distill_core.training.demo_models import demo_model, model_of_run, train_model
    from distill_core.training.demo_run import continue_settings, read_run_file
    from distill_core.training.run import DemoSettings
    from distill_core.training.spectrogram import SpectrogramConfig

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        click.echo(f"warning: {message}", err=True)  # one line: never a line of the library's source

    signal.signal(signal.SIGTERM, stop)  # SIGTERM ends the run like Ctrl-C: finished epochs stay saved
    settings = DemoSettings(
        name=name,
        out=out,
        epochs=epochs,
        data=data,
        config=config,
        clips=clips,
        batch_size=batch_size,
        seed=seed,
        device=device,
        resume=resume,
        spectrogram=SpectrogramConfig(mel_bins=mel_bins),
        overwrite=overwrite,
        force_config=force_config,
        tensorboard=not no_tensorboard,
        threads=threads,
        change_options=change_options,
    )
    if resume is not None:  # what was not given comes from the run: --resume alone continues it as it was
        ctx = click.get_current_context()
        given = {
            "tensorboard" if p.name == "no_tensorboard" else p.name
            for p in ctx.command.params
            if p.name and ctx.get_parameter_source(p.name) not in (ParameterSource.DEFAULT, None)
        }
        if "model" not in given:
            run = read_run_file(resume.parent)
            model = run.model if run is not None else model_of_run(resume.parent)
        settings, note = continue_settings(settings, given)
        if note:
            click.echo(note)
    run_folder = Path(settings.out) / settings.name
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            run_dir = train_model(model, settings, progress=not no_progress, notify=click.echo)
    except KeyboardInterrupt:
        last = run_folder / "last.pt"
        again = f"distill-loss train --resume {shlex.quote(str(last))}{' --no-progress' if no_progress else ''}"
        hint = f"; resume with: {again}" if last.exists() else ""  # run.json holds every other option
        click.echo(f"interrupted{hint}", err=True)
        sys.exit(130)
    click.echo(f"wrote {run_dir}/: {demo_model(model).holds}")


@click.command("import-seed")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder to write (default: runs/<name of RUN_DIR>).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    help="Learning rate for the continued run (default: where the seed's scheduler left it).",
)
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out (refused by default).")
def import_seed_cmd(run_dir: Path, out: Path | None, lr: float | None, overwrite: bool) -> None:
    """Bring a run of the seed's train() over: read its checkpoints running no pickled code, write our run folder."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.training.seed_import import import_seed

    click.echo(import_seed(run_dir, out, lr=lr, overwrite=overwrite).summary())
