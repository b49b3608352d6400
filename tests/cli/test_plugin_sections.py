"""The core's generic extension points for plugin-owned catalogues (issue 31, item 8): a plugin adds a section to
``distill-loss plugins`` through the ``distill_plugin_sections`` hook (text and ``--json``, BROKEN ones included,
one plugin's failure never hiding another's), and a config class refines its own JSON Schema through
``__distill_json_schema__``. Nothing here names a particular consumer: the sections are made-up widgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import attrs
import jsonschema
import pytest

from distill_core.loss.schema import class_schema
from distill_core.registry.discovery import Registry
from distill_core.registry.sections import PluginSection, SectionEntry, plugin_sections
from distill_core.testing import write_distribution

WIDGETS = """
import attrs
from distill_core import hookimpl
from distill_core.registry.entries import Provenance
from distill_core.registry.sections import PluginSection, SectionEntry

@attrs.define
class GearOptions:
    teeth: int = 12
    ratio: float = 0.5

class Gear:
    pass

class Lever:
    pass

@hookimpl
def distill_plugin_sections(register):
    register(PluginSection("widgets", "widget kinds", (
        SectionEntry("gear", Gear, GearOptions),
        SectionEntry("lever", Lever, None, Provenance("distill-levers", "3.1", "lever = levers")),
    ), broken=()))
"""

FLAKY = """
from distill_core import hookimpl

@hookimpl
def distill_plugin_sections(register):
    raise RuntimeError("the widget catalogue is unreachable")
"""

WRONG = """
from distill_core import hookimpl

@hookimpl
def distill_plugin_sections(register):
    register("widgets, please")
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    write_distribution(tmp_path, "distill-widgets", "1.2.0", {"widgets_mod": WIDGETS}, {"widgets": "widgets_mod"})
    write_distribution(tmp_path, "distill-flaky", "0.1", {"flaky_mod": FLAKY}, {"flaky": "flaky_mod"})
    write_distribution(tmp_path, "distill-wrong", "0.2", {"wrong_mod": WRONG}, {"wrong": "wrong_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_sections_come_through_one_hook_call_with_provenance_and_isolated_failures(site):
    registry = Registry()
    registry.load_entrypoints()
    assert not [b for b in registry.broken if b.name in ("widgets", "flaky", "wrong")]  # a section hook is a hook
    sections, broken = plugin_sections(registry)
    widgets = next(s for s in sections if s.name == "widgets")
    assert [(e.name, str(e.provenance), e.module) for e in widgets.entries] == [
        ("gear", "distill-widgets==1.2.0", "widgets_mod"),  # the registering plugin's distribution
        ("lever", "distill-levers==3.1", "widgets_mod"),  # as the entry says
    ]
    assert widgets.entries[0].provenance.entry_point == "widgets = widgets_mod"
    mine = sorted(str(b) for b in broken if b.name in ("flaky", "wrong"))
    assert mine == [
        "flaky (distill-flaky==0.1): distill_plugin_sections: RuntimeError: the widget catalogue is unreachable",
        "wrong (distill-wrong==0.2): distill_plugin_sections: register() expects one PluginSection "
        "(distill_core.registry.sections), got 'widgets, please'",
    ]


def test_a_section_name_two_plugins_claim_is_broken_for_the_second(distill_registry):
    class One:
        from distill_core import hookimpl

        @hookimpl
        def distill_plugin_sections(self, register):
            register(PluginSection("widgets", "widgets", (SectionEntry("gear", int),)))

    class Two(One):
        pass

    assert distill_registry.register_plugin(One(), name="one") == []  # no terms, and not refused: it has a hook
    distill_registry.register_plugin(Two(), name="two")
    sections, broken = plugin_sections(distill_registry)
    assert [s.name for s in sections] == ["widgets"]
    assert len(broken) == 1 and "section 'widgets' is registered by" in broken[0].error


def _cli(site, *args):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", "plugins", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.e2e
def test_distill_loss_plugins_lists_the_sections_in_text_and_json(site):
    text = _cli(site)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    start = lines.index("widget kinds:")
    assert lines[start + 1 : start + 5] == [
        "gear  (distill-widgets==1.2.0, module widgets_mod)",
        "    teeth: int = 12",
        "    ratio: float = 0.5",
        "lever  (distill-levers==3.1, module widgets_mod)",
    ]
    assert (
        "BROKEN flaky (distill-flaky==0.1): distill_plugin_sections: RuntimeError: the widget catalogue is unreachable"
        in lines
    )
    data = json.loads(_cli(site, "--json").stdout)
    widgets = data["sections"]["widgets"]
    assert widgets["title"] == "widget kinds" and widgets["broken"] == []
    assert widgets["entries"][0] == {
        "name": "gear",
        "distribution": "distill-widgets",
        "version": "1.2.0",
        "module": "widgets_mod",
        "entry_point": "widgets = widgets_mod",
        "options": [
            {"name": "teeth", "type": "int", "default": 12},
            {"name": "ratio", "type": "float", "default": 0.5},
        ],
    }
    assert {b["name"] for b in data["broken"]} >= {"flaky", "wrong"}
    assert "distill-levers==3.1" in _cli(site, "--requirements").stdout.split()


@attrs.define
class Shape:
    """A tagged union a plain attrs reading cannot see: ``kind`` picks what ``size`` means."""

    kind: str = "square"
    size: dict = attrs.field(factory=dict)

    @classmethod
    def __distill_json_schema__(cls, schema):
        variants = []
        for kind, prop in (("square", "side"), ("circle", "radius")):
            size = {"type": "object", "properties": {prop: {"type": "number"}}, "additionalProperties": False}
            variants.append({**schema, "properties": {**schema["properties"], "kind": {"const": kind}, "size": size}})
        return {"oneOf": variants}


def test_a_config_class_refines_its_own_schema_from_the_fields_one():
    schema = class_schema(Shape)
    assert [v["properties"]["kind"] for v in schema["oneOf"]] == [{"const": "square"}, {"const": "circle"}]
    assert schema["oneOf"][0]["title"] == "Shape"  # built on the schema read off its fields
    jsonschema.validate({"kind": "circle", "size": {"radius": 2.0}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "circle", "size": {"side": 2.0}}, schema)


def test_a_refinement_that_is_no_dict_is_refused_naming_the_class():
    @attrs.define
    class Odd:
        x: int = 0

        @classmethod
        def __distill_json_schema__(cls, schema):
            return None

    with pytest.raises(TypeError, match=r"Odd.__distill_json_schema__ returned NoneType, expected a dict"):
        class_schema(Odd)


def test_a_fixed_length_tuple_is_typed_place_by_place():
    @attrs.define
    class Pair:
        band: tuple[float, int] = (0.5, 2)

    band = class_schema(Pair)["properties"]["band"]
    jsonschema.validate([0.25, 3], band)
    for bad in ([0.25], [0.25, 3, 4], [0.25, "3"]):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, band)


def test_an_entry_whose_options_cannot_be_listed_breaks_its_section_not_the_listing(distill_registry):
    from distill_core import hookimpl

    @attrs.define
    class Needy:
        size: int  # no default: the listing could not show one

    class Plugin:
        @hookimpl
        def distill_plugin_sections(self, register):
            register(PluginSection("widgets", "widgets", (SectionEntry("gear", int, Needy),)))

    distill_registry.register_plugin(Plugin(), name="needy")
    sections, broken = plugin_sections(distill_registry)
    assert sections == [] and len(broken) == 1
    assert broken[0].error.startswith(
        "distill_plugin_sections: section 'widgets': 'gear''s options Needy cannot be built with their defaults: "
        "TypeError:"
    )
