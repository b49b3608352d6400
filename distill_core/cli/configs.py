"""The config commands: ``check`` validates a loss config and prints it resolved, ``schema`` prints its JSON Schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from distill_core.cli.errors import EXIT_USAGE


@click.command()
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


@click.command()
@click.argument("term", required=False)
def schema(term: str | None) -> None:
    """Print the JSON Schema of the loss config (or of one TERM's section) for editors."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.loss.schema import config_schema, term_schema

    click.echo(json.dumps(term_schema(term) if term else config_schema(), indent=2))
