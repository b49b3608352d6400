"""The plugin commands: ``plugins`` lists every installed loss term, ``new-plugin`` scaffolds a distribution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


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


@click.command()
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


@click.command("new-plugin")
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
