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


def _broken(b: Any) -> dict[str, Any]:
    return {
        "name": b.name,
        "distribution": b.provenance.distribution,
        "version": b.provenance.version,
        "error": b.error,
    }


def _section(section: Any) -> dict[str, Any]:
    """One plugin section as ``--json`` gives it: its title, entries (like terms, with ``options``), BROKEN ones."""
    return {
        "title": section.title,
        "entries": [
            {
                "name": e.name,
                "distribution": e.provenance.distribution,
                "version": e.provenance.version,
                "module": e.module,
                "entry_point": e.provenance.entry_point,
                "options": _fields(e.options) if e.options is not None else [],
            }
            for e in section.entries
        ],
        "broken": [_broken(b) for b in section.broken],
    }


def _echo_entry(row: dict[str, Any], fields: list[dict[str, Any]]) -> None:
    """One term or section entry, as a listing line and one line per config field."""
    click.echo(f"{row['name']}  ({row['distribution']}=={row['version']}, module {row['module']})")
    for f in fields:
        click.echo(f"    {f['name']}: {f['type']} = {json.dumps(f['default'])}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--requirements", is_flag=True, help="Print dist==version lines for the installed plugins.")
def plugins(as_json: bool, requirements: bool) -> None:
    """List every discovered loss term, its distribution, version, module and config fields, and the sections
    plugins add (e.g. the discriminator kinds), each entry with its options, BROKEN ones included."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.registry import recipes
    from distill_core.registry.discovery import get_registry
    from distill_core.registry.sections import plugin_sections

    registry = get_registry()
    terms = sorted(registry.terms.values(), key=lambda i: i.name)
    sections, failed = plugin_sections(registry)
    if requirements:
        provenances = [i.provenance for i in terms] + [e.provenance for s in sections for e in s.entries]
        for line in sorted({str(p) for p in provenances if p is not None and p.version}):
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
    broken = registry.broken + failed
    conflicts = {n: [str(i.provenance) for i in infos] for n, infos in registry.conflicts.items()}
    if as_json:
        listing = {
            "terms": rows,
            "broken": [_broken(b) for b in broken],
            "conflicts": conflicts,
            "warnings": registry.notes,
            "sections": {s.name: _section(s) for s in sections},
            "recipes": recipes.listing(),
        }
        click.echo(json.dumps(listing, indent=2))
        return
    for row in rows:
        _echo_entry(row, row["config"])
    for b in broken:
        click.echo(f"BROKEN {b}")
    for name, who in conflicts.items():
        click.echo(f"CONFLICT {name}: registered by {' and '.join(who)}")
    for note in registry.notes:
        click.echo(f"WARNING {note}")
    if not rows and not broken:
        click.echo("no loss terms installed (pip install distill-stft, ...)")
    click.echo('\nrecipes (recipe = "NAME"):')
    for recipe in recipes.listing():
        click.echo(f"{recipe['name']}  ({recipe['distribution']}=={recipe['version']}, {recipe['entry_point']})")
        if "error" in recipe:
            click.echo(f"    BROKEN {recipe['error']}")
        for name, term in recipe.get("terms", {}).items():
            kind = "" if term["term"] == name else f" (term {term['term']!r})"
            origin = f", from {term['distribution']}" if term["distribution"] else ""
            click.echo(f"    {name}{kind}: weight {json.dumps(term['weight'])}{origin}")
    for section in sections:
        click.echo(f"\n{section.title}:")
        for entry in _section(section)["entries"]:
            _echo_entry(entry, entry["options"])
        for b in section.broken:
            click.echo(f"BROKEN {section.name}: {b}")


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
@click.option(
    "--discriminator",
    is_flag=True,
    help="A discriminator kind for the adversarial term (distill-discriminators) instead of a loss term.",
)
def new_plugin(name: str, directory: Path, discriminator: bool) -> None:
    """Scaffold a plugin distribution distill-NAME with a term (or, with --discriminator, a discriminator kind),
    its config, a README and tests."""
    # lazy: `distill-loss --help` and each command load only what they use (torch is slow)
    from distill_core.cli.scaffold import scaffold

    path = scaffold(name, directory, discriminator=discriminator)
    click.echo(f"created {path}\nnext: pip install -e {path} && distill-loss plugins")
