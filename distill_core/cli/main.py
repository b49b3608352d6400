"""distill-loss: train the demo, list plugins, check configs, print schemas, scaffold plugins."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from distill_core import __version__

EXIT_USAGE = 2


class UserError(click.ClickException):
    """An error the user caused: one line, exit 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.config.converter import ConfigError
    from distill_core.files.atomic import WriteError
    from distill_core.loss.combined import TermBuildError
    from distill_core.loss.lockfile import LockError
    from distill_core.registry.discovery import PluginError, UnknownTermError
    from distill_core.terms.base import BatchError
    from distill_core.training.audio import AudioError
    from distill_core.training.checkpoint import CheckpointError
    from distill_core.training.compare import CompareError
    from distill_core.training.metrics import HistoryError
    from distill_core.training.run import NothingTrainedError, RunExistsError, SettingsError
    from distill_core.training.run_lock import RunBusyError
    from distill_core.util.extras import MissingExtra

    return (
        ConfigError,
        UnknownTermError,
        PluginError,
        TermBuildError,
        BatchError,
        AudioError,
        CheckpointError,
        HistoryError,
        LockError,
        MissingExtra,
        CompareError,
        RunExistsError,
        SettingsError,
        RunBusyError,
        NothingTrainedError,
        WriteError,
        FileNotFoundError,
        IsADirectoryError,
        PermissionError,
    )


def _one_line(exc: BaseException) -> str:
    """A user error's message on one line (a config's several problems joined with '; ')."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.config.converter import ConfigError

    if isinstance(exc, ConfigError):
        return exc.one_line()
    return " ".join(str(exc).split("\n"))


class Group(click.Group):
    """Turns user errors into one line and exit 2, unless --debug asks for the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _user_errors() as exc:
            if ctx.params.get("debug"):
                raise
            raise UserError(_one_line(exc)) from None


def _versions() -> str:
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.registry.discovery import get_registry

    registry = get_registry()
    lines = [f"distill-core {__version__}"]
    seen = set()
    for info in registry.terms.values():
        key = str(info.provenance)
        if key not in seen:
            seen.add(key)
            lines.append(f"  {key}")
    return "\n".join(lines)


def _print_version(ctx: click.Context, _: Any, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_versions())
        ctx.exit()


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show distill-core and plugin versions.",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """distill: loss terms from pip-installed plugins, combined into one weighted loss."""


def _fields(config_class: type) -> list[dict[str, Any]]:
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    import attrs

    from distill_core.config.converter import converter

    defaults = converter.unstructure(config_class())
    return [
        {"name": a.name, "type": _type_name(a.type), "default": defaults.get(a.name)}
        for a in attrs.fields(config_class)
    ]


def _type_name(t: Any) -> str:
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.config.converter import _is_weight

    if _is_weight(t):
        return "float | schedule"
    if isinstance(t, type):
        return t.__name__
    return str(t).replace("typing.", "")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--requirements", is_flag=True, help="Print dist==version lines for the installed plugins.")
def plugins(as_json: bool, requirements: bool) -> None:
    """List every discovered loss term, its distribution, version, module and config fields."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.registry.discovery import get_registry

    registry = get_registry()
    terms = sorted(registry.terms.values(), key=lambda i: i.name)
    if requirements:
        for line in sorted({str(i.provenance) for i in terms if i.provenance.version}):
            click.echo(line)
        return
    rows: list[dict[str, Any]] = [
        {
            "name": i.name,
            "distribution": i.provenance.distribution,
            "version": i.provenance.version,
            "module": i.module,
            "entry_point": i.provenance.entry_point,
            "config": _fields(i.config_class),
        }
        for i in terms
    ]
    broken = [
        {"name": b.name, "distribution": b.provenance.distribution, "version": b.provenance.version, "error": b.error}
        for b in registry.broken
    ]
    conflicts = {n: [str(i.provenance) for i in infos] for n, infos in registry.conflicts.items()}
    if as_json:
        click.echo(
            json.dumps({"terms": rows, "broken": broken, "conflicts": conflicts, "warnings": registry.notes}, indent=2)
        )
        return
    for row in rows:
        click.echo(f"{row['name']}  ({row['distribution']}=={row['version']}, module {row['module']})")
        for f in row["config"]:
            click.echo(f"    {f['name']}: {f['type']} = {json.dumps(f['default'])}")
    for b in registry.broken:
        click.echo(f"BROKEN {b}")
    for name, who in conflicts.items():
        click.echo(f"CONFLICT {name}: registered by {' and '.join(who)}")
    for note in registry.notes:
        click.echo(f"WARNING {note}")
    if not rows and not broken:
        click.echo("no loss terms installed (pip install distill-stft, ...)")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--lock",
    "lock",
    type=click.Path(path_type=Path),
    help="A run's lock.json (or checkpoint) naming where missing terms came from; default: the "
    "lock.json beside CONFIG, if any.",
)
@click.option("--model", default="vae", show_default=True, help="The demo model whose batch keys CONFIG may read.")
def check(config: Path, lock: Path | None, model: str) -> None:
    """Validate CONFIG against the installed plugins and print it resolved, defaults filled in."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.config.converter import ConfigError
    from distill_core.loss.config import batch_problems, dumps_config, load_config, validate
    from distill_core.registry.provenance import term_origins
    from distill_core.training.demo_models import demo_model

    beside = config.parent / "lock.json"
    try:
        with term_origins(lock=lock if lock is not None else beside if beside.is_file() else None):
            resolved = load_config(config)
        validate(resolved, source=str(config))  # what building the loss checks
        demo = demo_model(model).adapter()  # what `distill-loss train --model` gives the loss
        who = "distill-loss train" + (f" --model {model}" if model != "vae" else "")
        problems = batch_problems(resolved, demo.provides(), demo.carries_gradient(), who=who)
        if problems:
            raise ConfigError(problems, str(config))
    except ConfigError as exc:
        click.echo(f"error: {exc.one_line()}" if len(exc.problems) == 1 else str(exc), err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"# {config}: valid")
    click.echo(dumps_config(resolved, ".toml"))


@main.command()
@click.argument("term", required=False)
def schema(term: str | None) -> None:
    """Print the JSON Schema of the loss config (or of one TERM's section) for editors."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.loss.schema import config_schema, term_schema

    click.echo(json.dumps(term_schema(term) if term else config_schema(), indent=2))


@main.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to create distill-NAME/ in.",
)
def new_plugin(name: str, directory: Path) -> None:
    """Scaffold a plugin distribution distill-NAME with a term, its config, a README and a test."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.cli.scaffold import scaffold

    path = scaffold(name, directory)
    click.echo(f"created {path}\nnext: pip install -e {path} && distill-loss plugins")


@main.command("train")
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


@main.command("plot")
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


@main.command("compare")
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


@main.command("import-seed")
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


if __name__ == "__main__":  # pragma: no cover
    main()
