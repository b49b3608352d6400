"""The commands that read finished runs: ``plot`` their histories, ``compare`` their reconstructions."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("plot")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG to write (default: RUN/losses.png for one run; required for several).",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def plot_cmd(runs: tuple[Path, ...], out: Path | None, force: bool) -> None:
    """Redraw losses.png from each RUN's history.json; several runs are overlaid, one colour each."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.files.atomic import file_in_the_way
    from distill_core.training.compare import CompareError, distinct_runs
    from distill_core.training.metrics import MetricsHistory
    from distill_core.training.plots import plot_runs

    if out is None and len(runs) > 1:
        raise CompareError("several runs need --out FILE.png (each run's own losses.png stays as it is)")
    if out is not None and out.exists() and not force:
        raise CompareError(f"{out} already exists; choose another --out or pass --force to replace it")
    if out is not None:
        blocking = file_in_the_way(out.parent)
        if blocking is not None:
            raise CompareError(
                f"--out {out}: {blocking} is a file, so {out.name} cannot be written under it; "
                "expected a path in a folder"
            )
    distinct_runs(list(runs))
    names = [r.name for r in runs]
    labels = names if len(set(names)) == len(names) else [str(r) for r in runs]
    histories = {label: MetricsHistory.load(run / "history.json") for label, run in zip(labels, runs)}
    path = plot_runs(histories, out if out is not None else runs[0] / "losses.png")
    click.echo(f"wrote {path}")


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of held-out WAV files; every run reconstructs the same clips.",
)
@click.option("--clips", type=click.IntRange(min=1), default=32, show_default=True, help="Clips to use at most.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("compare"),
    show_default=True,
    help="Folder for compare.md and compare.png.",
)
@click.option("--force", is_flag=True, help="Replace compare.md and compare.png if --out has them.")
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--seconds",
    type=float,
    help="Clip length when only vocoder runs are compared (default 1.0; a VAE "
    "run fixes its own, 0.504 s at the demo's settings).",
)
def compare_cmd(
    runs: tuple[Path, ...], data: Path, clips: int, out: Path, force: bool, device: str, seconds: float | None
) -> None:
    """Reconstruct held-out WAVs with each run's best.pt (VAE or vocoder); tabulate LSD, MR-STFT, mel, SI-SDR, SC."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.training.compare import compare_runs, markdown, output_paths, write_comparison

    output_paths(out, force)  # refuse before the work, not after
    comparison = compare_runs(list(runs), data, max_clips=clips, device=device, seconds=seconds)
    md, png = write_comparison(comparison, out, force=force)
    click.echo(markdown(comparison))
    click.echo(f"wrote {md} and {png}")
