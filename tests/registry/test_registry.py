"""Discovery from real entry points of real (throwaway) distributions, isolation, switches, provenance."""

from __future__ import annotations

import itertools
import sys

import attrs
import pytest

import distill_core
from distill_core import LossConfig, PluginError, Registry, UnknownTermError, hookimpl, load_config
from distill_core.registry.discovery import get_registry, reset_registry
from distill_core.testing import write_distribution

_counter = itertools.count()

TERM_SOURCE = """
import attrs, torch
from distill_core import LossTerm, hookimpl

@attrs.define
class Cfg:
    weight: float = 1.0

class T(LossTerm):
    name = "{term}"
    config_class = Cfg
    requires = ("recon",)
    def forward(self, batch):
        return batch["recon"].mean()

@hookimpl
def distill_loss_terms(register):
    {body}
"""


def make_dist(root, dist: str, version: str, term: str, body: str = "register(T)", prefix: str = "") -> str:
    """An installed distribution with one entry point in group 'distill', written under root."""
    module = f"throwaway_{dist.replace('-', '_')}_{next(_counter)}"
    write_distribution(root, dist, version, {module: prefix + TERM_SOURCE.format(term=term, body=body)}, {term: module})
    return module


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for env in ("DISTILL_STRICT_PLUGINS", "DISTILL_DISABLE_PLUGIN_AUTOLOAD", "DISTILL_PLUGINS"):
        monkeypatch.delenv(env, raising=False)
    return tmp_path


def test_import_scans_nothing(monkeypatch):
    import importlib.metadata as md

    calls = []
    monkeypatch.setattr(md, "distributions", lambda **kw: calls.append(kw) or [])
    old = reset_registry(None)
    try:
        import importlib

        importlib.reload(distill_core)
        assert calls == []
        get_registry()
        get_registry()
        assert calls == [{}]  # one pass over the installed distributions per process, then cached
    finally:
        reset_registry(old)


def test_discovers_a_real_entry_point_with_provenance(site):
    make_dist(site, "distill-echo", "1.2.3", "echo")
    reg = Registry()
    reg.load_entrypoints()
    info = reg.get("echo")
    assert info.provenance.distribution == "distill-echo"
    assert info.provenance.version == "1.2.3"
    assert info.provenance.entry_point.startswith("echo = throwaway_distill_echo")
    assert str(info.provenance) == "distill-echo==1.2.3"
    assert "stft" in reg.terms  # the real installed plugins load beside it


def test_broken_plugins_are_isolated_and_recorded(site):
    make_dist(site, "distill-good", "0.1", "good")
    make_dist(site, "distill-noimport", "0.2", "noimport", prefix="import a_module_that_does_not_exist\n")
    make_dist(site, "distill-hookfails", "0.3", "hookfails", body='raise RuntimeError("boom in hook")')
    reg = Registry()
    reg.load_entrypoints()
    assert "good" in reg.terms
    broken = {b.name: str(b) for b in reg.broken}
    assert broken["noimport"] == (
        "noimport (distill-noimport==0.2): ModuleNotFoundError: No module named 'a_module_that_does_not_exist'"
    )
    assert broken["hookfails"] == "hookfails (distill-hookfails==0.3): RuntimeError: boom in hook"
    # A config naming a term of a broken plugin fails with that same message.
    with pytest.raises(distill_core.ConfigError) as err:
        load_config({"recipe": "none", "terms": {"hookfails": {}}}, registry=reg)
    assert broken["hookfails"] in str(err.value)
    assert "terms.hookfails" in str(err.value)


def test_strict_mode_raises_at_discovery(site, monkeypatch):
    make_dist(site, "distill-noimport", "0.2", "noimport", prefix="import a_module_that_does_not_exist\n")
    monkeypatch.setenv("DISTILL_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"noimport \(distill-noimport==0.2\): ModuleNotFoundError"):
        Registry().load_entrypoints()


def test_duplicate_term_names_are_an_error_naming_both(site):
    make_dist(site, "distill-first", "1.0", "twin")
    make_dist(site, "distill-second", "2.0", "twin")
    reg = Registry()
    reg.load_entrypoints()
    assert "twin" not in reg.terms  # never silently first-wins
    with pytest.raises(UnknownTermError) as err:
        reg.get("twin")
    assert "distill-first==1.0" in str(err.value) and "distill-second==2.0" in str(err.value)


def test_duplicate_in_strict_mode_raises(site, monkeypatch):
    make_dist(site, "distill-first", "1.0", "twin")
    make_dist(site, "distill-second", "2.0", "twin")
    monkeypatch.setenv("DISTILL_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="distill-first==1.0.*distill-second==2.0"):
        Registry().load_entrypoints()


def test_disable_autoload(site, monkeypatch):
    make_dist(site, "distill-echo", "1.0", "echo")
    monkeypatch.setenv("DISTILL_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = Registry()
    reg.load_entrypoints()
    assert reg.terms == {}


@pytest.mark.parametrize("allow", ["distill-echo", "distill_echo", "echo", "echo,stft"])
def test_allowlist_by_distribution_or_entry_point(site, monkeypatch, allow):
    make_dist(site, "distill-echo", "1.0", "echo")
    make_dist(site, "distill-other", "1.0", "other")
    monkeypatch.setenv("DISTILL_PLUGINS", allow)
    reg = Registry()
    reg.load_entrypoints()
    assert "echo" in reg.terms and "other" not in reg.terms
    assert ("stft" in reg.terms) == ("stft" in allow)

    pass


def _term(name: str, requires=("recon",), config_class=None):
    from distill_core import LossTerm

    @attrs.define
    class Cfg:
        weight: float = 1.0

    return type(
        f"T_{name}",
        (LossTerm,),
        {
            "name": name,
            "config_class": config_class or Cfg,
            "requires": requires,
            "forward": lambda self, b: b["recon"].sum(),
        },
    )


def test_register_plugin_object_in_process(distill_registry):
    term = _term("notebook")

    class NotebookPlugin:
        @hookimpl
        def distill_loss_terms(self, register):
            register(term)

    added = distill_core.register(NotebookPlugin())
    assert added == ["notebook"]
    assert distill_registry.get("notebook").provenance.distribution == "<in-process>"
    distill_core.register(_term("direct"))
    assert "direct" in distill_registry.terms


@pytest.mark.parametrize(
    "bad,match",
    [
        (_term("not an identifier"), "must be a Python identifier"),
        (_term("ok", requires=["recon"]), "requires must be a tuple of str"),
        (_term("ok", config_class=dict), "config_class must be an attrs class"),
        (
            _term("ok", config_class=attrs.make_class("NoWeight", {"x": attrs.field(default=1)})),
            "has no 'weight' field",
        ),
        (type("NotATerm", (), {}), "expects a LossTerm subclass"),
    ],
)
def test_hookimpl_validation(distill_registry, bad, match):
    class P:
        @hookimpl
        def distill_loss_terms(self, register):
            register(bad)

    with pytest.raises(PluginError, match=match):
        distill_registry.register_plugin(P())
    assert not distill_registry.pm.get_plugins()


def test_pluggy_signature_and_hook_name_checks(distill_registry):
    class WrongArg:
        @hookimpl
        def distill_loss_terms(self, registrar):
            pass

    class Misspelt:
        @hookimpl
        def distill_loss_term(self, register):
            pass

    with pytest.raises(Exception, match="registrar"):
        distill_registry.register_plugin(WrongArg())
    with pytest.raises(Exception, match="distill_loss_term"):
        distill_registry.register_plugin(Misspelt())


def test_unknown_term_lists_installed(fakes, distill_registry):
    with pytest.raises(
        UnknownTermError,
        match=r"unknown term 'fake_l2'; did you mean 'fake_l1'\?.*"
        r"installed terms: fake_l1, fake_norm, fake_sq",
    ):
        distill_registry.get("fake_l2")


def test_missing_recipe_plugin_names_its_distribution(distill_registry):
    with pytest.raises(distill_core.ConfigError) as err:
        LossConfig()
    assert "terms.stft: unknown term 'stft'; it is provided by the distribution 'distill-stft'" in str(err.value)
    assert "terms.kl: unknown term 'kl'; it is provided by the distribution 'distill-kl'" in str(err.value)


def _importlib_view(group: str) -> list[tuple[str, str, str, str]]:
    """importlib.metadata's own answer (the reference): entry points of ``group`` with distribution and version."""
    from importlib import metadata

    return [(ep.name, ep.value, ep.dist.metadata["Name"], ep.dist.version) for ep in metadata.entry_points(group=group)]


@pytest.mark.parametrize("group", ["distill", "distill.recipes"])
def test_the_entry_point_reader_agrees_with_importlib_metadata(site, tmp_path_factory, monkeypatch, group):
    """Real distributions: one declaring only another group, one found twice on sys.path (the first counts)."""
    from distill_core.registry.entrypoints import declared_entry_points

    make_dist(site, "distill-echo", "1.2.3", "echo")
    other = write_distribution(site, "distill-elsewhere", "0.1", {}, {"elsewhere": "json"})
    (other / "entry_points.txt").write_text("[distill.elsewhere]\nelsewhere = json\n")
    shadowed = tmp_path_factory.mktemp("shadowed")
    make_dist(shadowed, "distill-echo", "0.9", "echo")
    monkeypatch.setattr(sys, "path", [*sys.path, str(shadowed)])  # after the copy in site
    ours = [(ep.name, ep.value, name, version) for ep, name, version in declared_entry_points(group)]
    assert ours == _importlib_view(group)
    if group == "distill":
        assert [(name, version) for ep, _, name, version in ours if ep == "echo"] == [("distill-echo", "1.2.3")]
        assert "distill-elsewhere" not in {name for _, _, name, _ in ours}
        assert {"distill-stft", "distill-kl", "distill-mel"} <= {name for _, _, name, _ in ours}
    else:
        # the core's own recipe, and whatever installed plugins add (distill-recipes: dac, encodec, ...), in the
        # order the distributions are found on sys.path (a folder listing's: not the same on every machine)
        core = [row[:3] for row in ours if row[2] == "distill-core"]
        assert core == [("vae", "distill_core.seed.recipe:VAE", "distill-core")]


def test_a_distribution_installed_after_a_scan_is_found_and_reset_reads_afresh(site):
    """The entry points are read once for discovery and the recipes, until a sys.path folder changes or
    reset_registry() is called."""
    from distill_core.registry import entrypoints

    def names() -> set[str]:
        return {ep.name for ep, _, _ in entrypoints.declared_entry_points("distill")}

    make_dist(site, "distill-first", "1.0", "first")
    assert "first" in names()
    make_dist(site, "distill-later", "1.0", "later")  # the same folder, right after the scan
    assert {"first", "later"} <= names()
    elsewhere = write_distribution(site, "distill-moved", "0.1", {}, {"moved": "json"})
    (elsewhere / "entry_points.txt").write_text("[console_scripts]\nmoved = json\n")
    assert "moved" not in names()
    (elsewhere / "entry_points.txt").write_text("[distill]\nmoved = json\n")  # changed in place, as no pip does
    old = reset_registry(None)  # what a user calls after changing the installed plugins
    try:
        assert "moved" in names()
    finally:
        reset_registry(old)
