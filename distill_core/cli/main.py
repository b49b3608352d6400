"""distill-loss: the click group, its --version and --debug, and every command registered on it.

The commands live by family: ``plugins`` and ``new-plugin`` in ``cli.plugins``, ``check`` and ``schema`` in
``cli.configs``, ``train`` and ``import-seed`` in ``cli.train``, ``plot`` and ``compare`` in ``cli.results``;
how a user's error is shown in ``cli.errors``.
"""

from __future__ import annotations

from typing import Any

import click

from distill_core import __version__
from distill_core.cli.configs import check, schema
from distill_core.cli.errors import EXIT_USAGE, Group, UserError
from distill_core.cli.plugins import new_plugin, plugins
from distill_core.cli.results import compare_cmd, plot_cmd
from distill_core.cli.train import import_seed_cmd, train_cmd

# Besides the group: what this module held before its commands moved out, still importable from here.
__all__ = [
    "EXIT_USAGE",
    "Group",
    "UserError",
    "check",
    "compare_cmd",
    "import_seed_cmd",
    "main",
    "new_plugin",
    "plot_cmd",
    "plugins",
    "schema",
    "train_cmd",
]


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


main.add_command(plugins)
main.add_command(check)
main.add_command(schema)
main.add_command(new_plugin)
main.add_command(train_cmd)
main.add_command(plot_cmd)
main.add_command(compare_cmd)
main.add_command(import_seed_cmd)


if __name__ == "__main__":  # pragma: no cover
    main()
