"""A third-party discriminator plugin, installed as a distribution: the core's ``distill`` entry-point group finds
its ``distill_discriminators`` hook (distill-discriminators declares it; the plugin has no term of its own and is
not BROKEN), and a config names its kind like a built-in one; ``distill-loss plugins`` lists the kinds (BROKEN
ones too) and the schema types each kind's options."""

from __future__ import annotations

import pytest
import torch
from distill_discriminators import Adversarial, AdversarialConfig, CommonOptions, Discriminator, hookspecs

from distill_core.registry.discovery import Registry, reset_registry
from distill_core.testing import write_distribution

PLUGIN = """
import attrs, torch
from distill_core import hookimpl
from distill_discriminators import CommonOptions, Discriminator, SubOutput

@attrs.define
class TinyConfig(CommonOptions):
    width: float = 1.0
    channels: int = 4

class Tiny(Discriminator):
    name = "tiny"
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.conv = torch.nn.Conv1d(1, config.channels, 5, padding=2)
        self.out = torch.nn.Conv1d(config.channels, 1, 3, padding=1)

    def judge(self, x):
        h = torch.nn.functional.leaky_relu(self.conv(x), 0.1)
        return [SubOutput([h], self.out(h))]

@hookimpl
def distill_discriminators(register):
    register(Tiny)
"""


def test_a_discriminator_only_plugin_is_discovered_through_the_core(tmp_path, monkeypatch):
    write_distribution(tmp_path, "distill-tiny-disc", "0.3.0", {"tiny_disc": PLUGIN}, {"tiny_disc": "tiny_disc"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(hookspecs, "_REGISTRY", None)
    core = Registry()
    core.load_entrypoints()
    old = reset_registry(core)
    try:
        assert not [b for b in core.broken if "tiny" in str(b)], core.broken  # no terms, and not broken
        registry = hookspecs.discriminators()
        assert registry.get("tiny").__module__ == "tiny_disc"
        assert (
            registry.sources["tiny"] == "distill-tiny-disc:tiny_disc"
            and registry.sources["mpd"] == "distill-discriminators"
        )
        torch.manual_seed(0)
        adv = Adversarial(
            AdversarialConfig(preset="dac", discriminators=[{"kind": "tiny", "options": {"channels": 2}}])
        )
        fake, real = torch.randn(2, 1, 256), torch.randn(2, 1, 256)
        assert set(adv.update(fake, real)) == {"disc_loss", "real_score", "fake_score"}
        assert "kind: unknown discriminator kind 'tinny'; did you mean 'tiny'?" in _problem({"kind": "tinny"})
    finally:
        reset_registry(old)


def _problem(spec):
    try:
        AdversarialConfig(discriminators=[spec])
    except Exception as exc:  # InvalidConfig, with the path of the field
        return str(exc)
    return ""


# --- first-class: listed with provenance and options, BROKEN ones too, typed in the schema (issue 31, item 8) ---

RAISES = """
from distill_core import hookimpl

@hookimpl
def distill_discriminators(register):
    import a_module_that_is_not_installed
"""

NOT_A_DISCRIMINATOR = """
import attrs
from distill_core import hookimpl

@attrs.define
class Options:
    channels: int = 2

class Plain:
    name = "plain"
    config_class = Options

@hookimpl
def distill_discriminators(register):
    register(Plain)
"""


def _site(tmp_path):
    write_distribution(tmp_path, "distill-tiny-disc", "0.3.0", {"tiny_disc": PLUGIN}, {"tiny_disc": "tiny_disc"})
    write_distribution(tmp_path, "distill-raises", "0.1", {"raises_disc": RAISES}, {"raises": "raises_disc"})
    write_distribution(tmp_path, "distill-plain", "0.2", {"plain_disc": NOT_A_DISCRIMINATOR}, {"plain": "plain_disc"})


def test_the_listing_section_has_every_kind_with_provenance_and_options_and_the_broken_plugins(tmp_path, monkeypatch):
    from distill_core.registry.sections import plugin_sections

    _site(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(hookspecs, "_REGISTRY", None)
    core = Registry()
    core.load_entrypoints()
    old = reset_registry(core)
    try:
        sections, failed = plugin_sections(core)
        assert failed == []
        (section,) = [s for s in sections if s.name == "discriminators"]
        kinds = {e.name: e for e in section.entries}
        assert {"mpd", "msd", "mrd", "msstftd", "cqtd", "tiny"} <= set(kinds)
        assert "plain" not in kinds
        assert (kinds["tiny"].provenance.distribution, kinds["tiny"].provenance.version) == (
            "distill-tiny-disc",
            "0.3.0",
        )
        assert kinds["tiny"].options.__name__ == "TinyConfig" and kinds["tiny"].module == "tiny_disc"
        assert kinds["mpd"].provenance.distribution == "distill-discriminators"
        broken = sorted(str(b) for b in section.broken)
        assert broken == [
            "plain (distill-plain==0.2): distill_discriminators: distill-plain:plain: register() expects a "
            "Discriminator subclass with a name and a config_class, got <class 'plain_disc.Plain'>",
            "raises (distill-raises==0.1): distill_discriminators: ModuleNotFoundError: No module named "
            "'a_module_that_is_not_installed'",
        ]
        # a kind a config asks for that is not installed names the broken plugins
        message = _problem({"kind": "plain"})
        assert "kind: unknown discriminator kind 'plain'" in message
        assert "broken discriminator plugins: " in message and "raises (distill-raises==0.1)" in message
        # the good plugins' kinds still train
        adv = Adversarial(AdversarialConfig(preset="dac", discriminators=[{"kind": "tiny"}]))
        assert set(adv.update(torch.randn(2, 1, 256), torch.randn(2, 1, 256))) == {
            "disc_loss",
            "real_score",
            "fake_score",
        }
    finally:
        reset_registry(old)


def test_a_config_class_that_breaks_the_contract_is_refused_naming_it():
    import attrs

    @attrs.define
    class Loose:  # no CommonOptions: the base class's forward reads normalize_input
        width: float = 1.0

    class NoCommon(Discriminator):
        name = "no_common"
        config_class = Loose

    @attrs.define
    class Strict(CommonOptions):
        size: int = attrs.field(default=0, validator=attrs.validators.ge(1))

    class NoDefaults(Discriminator):
        name = "no_defaults"
        config_class = Strict

    registry = hookspecs.DiscriminatorRegistry()
    with pytest.raises(
        TypeError,
        match=r"mine: .*NoCommon.config_class must be an attrs class inheriting distill_discriminators.CommonOptions",
    ):
        registry.add(NoCommon, "mine")
    with pytest.raises(
        TypeError, match=r"mine: .*NoDefaults.config_class Strict cannot be built with its defaults: ValueError"
    ):
        registry.add(NoDefaults, "mine")


@pytest.mark.slow
@pytest.mark.e2e
def test_distill_loss_plugins_lists_the_discriminator_kinds_and_the_broken_ones(tmp_path):
    import json
    import os
    import subprocess
    import sys

    _site(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def cli(*args):
        r = subprocess.run(
            [sys.executable, "-m", "distill_core.cli.main", "plugins", *args], capture_output=True, text=True, env=env
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    lines = cli().splitlines()
    start = lines.index(hookspecs.TITLE + ":")
    tiny = lines.index("tiny  (distill-tiny-disc==0.3.0, module tiny_disc)")
    assert start < lines.index("mpd  (distill-discriminators==0.1.0, module distill_discriminators.mpd)") < tiny
    assert lines[tiny + 1 : tiny + 5] == [
        "    normalize_input: bool = false",
        "    first_layer_features: bool = true",
        "    width: float = 1.0",
        "    channels: int = 4",
    ]
    assert (
        "BROKEN discriminators: raises (distill-raises==0.1): distill_discriminators: ModuleNotFoundError: No module "
        "named 'a_module_that_is_not_installed'" in lines
    )
    section = json.loads(cli("--json"))["sections"]["discriminators"]
    entry = next(e for e in section["entries"] if e["name"] == "tiny")
    assert (entry["distribution"], entry["version"], entry["module"]) == ("distill-tiny-disc", "0.3.0", "tiny_disc")
    assert {o["name"]: o["default"] for o in entry["options"]} == {
        "normalize_input": False,
        "first_layer_features": True,
        "width": 1.0,
        "channels": 4,
    }
    assert sorted(b["name"] for b in section["broken"]) == ["plain", "raises"]
    assert "distill-tiny-disc==0.3.0" in cli("--requirements").split()


def _tagged(monkeypatch):
    """The adversarial term's schema with DiscriminatorSpec refining its own (``__distill_json_schema__``)."""
    from distill_discriminators.config import DiscriminatorSpec

    from distill_core.loss.schema import term_schema

    if not hasattr(DiscriminatorSpec, "__distill_json_schema__"):
        monkeypatch.setattr(
            DiscriminatorSpec,
            "__distill_json_schema__",
            classmethod(lambda cls, schema: hookspecs.spec_schema(schema)),
            raising=False,
        )
    return term_schema("adversarial")


def test_the_schema_types_each_kinds_options_as_a_union_tagged_by_kind(monkeypatch):
    import jsonschema

    schema = _tagged(monkeypatch)
    jsonschema.Draft202012Validator.check_schema(schema)
    items = schema["properties"]["discriminators"]["anyOf"][0]["items"]
    kinds = [v["properties"]["kind"]["const"] for v in items["oneOf"]]
    assert kinds == sorted(hookspecs.discriminators().classes) and "mpd" in kinds
    mpd = items["oneOf"][kinds.index("mpd")]
    assert mpd["properties"]["options"]["title"] == "MPDConfig"
    assert mpd["properties"]["options"]["properties"]["periods"] == {
        "type": "array",
        "items": {"type": "integer"},
        "default": [2, 3, 5, 7, 11],
    }
    validator = jsonschema.Draft202012Validator(schema)
    good = {"discriminators": [{"kind": "mpd", "options": {"periods": [2, 3]}}, {"kind": "mrd", "weight": 0.1}]}
    assert list(validator.iter_errors(good)) == []
    for bad in (
        {"discriminators": [{"kind": "mpd", "options": {"fft_sizes": [512]}}]},  # another kind's option
        {"discriminators": [{"kind": "mrd", "options": {"bands": [[0.0, 0.1, 0.2]]}}]},  # a band is a pair
        {"discriminators": [{"kind": "nope"}]},
        {"discriminators": [{"options": {}}]},  # kind is required
    ):
        assert list(validator.iter_errors(bad)), bad
