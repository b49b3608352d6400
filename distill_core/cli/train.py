"""The commands that write a run folder: ``train`` a demo model (or resume a run), ``import-seed`` a seed run."""

from __future__ import annotations

import sys
from pathlib import Path

import click


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
    help="Continue from a checkpoint, e.g. runs/demo/last.pt; with no CONFIG, the run's own config.toml.",
)
@click.option("--overwrite", is_flag=True, help="Replace a run already in the run folder (refused by default).")
@click.option(
    "--force-config",
    is_flag=True,
    help="Resume with a changed loss config: starts a new best-tracking segment, recorded in the history.",
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
    no_progress: bool,
    no_tensorboard: bool,
) -> None:
    """Train a demo model with the combined loss: the VAE on (magnitude, IF) spectrograms, or the vocoder."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    import signal

    from distill_core.training.demo_models import demo_model, train_model
    from distill_core.training.run import DemoSettings
    from distill_core.training.spectrogram import SpectrogramConfig

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

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
    )
    try:
        run_dir = train_model(model, settings, progress=not no_progress, notify=click.echo)
    except KeyboardInterrupt:
        last = out / name / "last.pt"
        again = f"distill-loss train{' --model ' + model if model != 'vae' else ''} --name {name} --out {out}"
        hint = f"; resume with: {again} --resume {last}" if last.exists() else ""
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
