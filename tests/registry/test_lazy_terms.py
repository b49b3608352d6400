"""Terms registered by name and ``module:Class``: discovery imports no term module; first use loads and checks it,
and a failure then is a broken plugin that names the term, where it points, and the distribution."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

import distill_core
from distill_core import PluginError, Registry, UnknownTermError, load_config
from distill_core.testing import write_distribution

_counter = itertools.count()

PLUGIN = """
from distill_core import hookimpl

@hookimpl
def distill_loss_terms(register):
    {body}
"""

TERM = """
import attrs
from distill_core import LossTerm

@attrs.define
class Cfg:
    weight: float = 1.0

class Echo(LossTerm):
    name = "{term}"
    config_class = Cfg
    requires = ("recon",)
    def forward(self, batch):
        return batch["recon"].mean()

class NoConfig(LossTerm):
    name = "{term}"
    requires = ("recon",)
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for env in ("DISTILL_STRICT_PLUGINS", "DISTILL_DISABLE_PLUGIN_AUTOLOAD", "DISTILL_PLUGINS"):
        monkeypatch.delenv(env, raising=False)
    return tmp_path


def lazy_dist(root, dist: str, term: str, target: str = "{terms}:Echo", body: str | None = None) -> str:
    """A distribution whose hook registers ``term`` by reference to a class in a second module; returns that
    module's name (never imported by the hook)."""
    n = next(_counter)
    plugin, terms = f"lazy_plugin_{n}", f"lazy_terms_{n}"
    body = body or f"register({term!r}, {target.format(terms=terms)!r})"
    write_distribution(
        root, dist, "0.1", {plugin: PLUGIN.format(body=body), terms: TERM.format(term=term)}, {term: plugin}
    )
    return terms


def test_discovery_imports_no_term_module_and_first_use_loads_it(site):
    terms = lazy_dist(site, "distill-lazy-echo", "lazy_echo")
    reg = Registry()
    reg.load_entrypoints()
    assert "lazy_echo" in reg and terms not in sys.modules
    info = reg.get("lazy_echo")
    assert terms in sys.modules and info.cls is sys.modules[terms].Echo
    assert str(info.provenance) == "distill-lazy-echo==0.1"
    assert reg.get("lazy_echo") is info  # loaded once
    loss = distill_core.CombinedLoss(
        load_config({"recipe": "none", "terms": {"lazy_echo": {"weight": 2.0}}}, registry=reg), registry=reg
    )
    import torch

    out = loss({"recon": torch.ones(2, 3)})
    assert float(out["lazy_echo_loss"]) == 1.0 and float(out["total_loss"]) == 2.0


@pytest.mark.parametrize(
    "target, error",
    [
        ("{terms}:Missing", "AttributeError: module '{terms}' has no attribute 'Missing'"),
        ("lazy_no_such_module:Echo", "ModuleNotFoundError: No module named 'lazy_no_such_module'"),
        ("{terms}:NoConfig", "NoConfig.config_class must be an attrs class, got None"),
    ],
)
def test_a_reference_that_fails_is_broken_at_first_use_and_names_the_term(site, target, error):
    terms = lazy_dist(site, "distill-lazy-bad", "lazy_bad", target)
    reg = Registry()
    reg.load_entrypoints()
    assert "lazy_bad" in reg and reg._broken == []  # nothing is known to fail before first use
    where, error = target.format(terms=terms), error.format(terms=terms)
    expected = f"lazy_bad (distill-lazy-bad==0.1): term 'lazy_bad' ({where}): {error}"
    with pytest.raises(UnknownTermError) as err:
        reg.get("lazy_bad")
    assert str(err.value) == f"term 'lazy_bad' comes from a plugin that failed to load: {expected}"
    assert [str(b) for b in reg.broken] == [expected] and "lazy_bad" not in reg.terms
    with pytest.raises(distill_core.ConfigError, match="terms.lazy_bad: term 'lazy_bad' comes from a plugin"):
        load_config({"recipe": "none", "terms": {"lazy_bad": {}}}, registry=reg)


def test_listing_the_terms_loads_every_reference_and_reports_the_broken(site):
    lazy_dist(site, "distill-lazy-good", "lazy_good")
    lazy_dist(site, "distill-lazy-bad", "lazy_bad", "lazy_no_such_module:Echo")
    reg = Registry()
    reg.load_entrypoints()
    assert "lazy_good" in reg.terms and "lazy_bad" not in reg.terms
    assert [b.name for b in reg.broken] == ["lazy_bad"]


def test_a_class_named_otherwise_than_registered_is_refused(site):
    terms = lazy_dist(
        site,
        "distill-lazy-renamed",
        "lazy_renamed",
        body="register('lazy_other', '{terms}:Echo'.format(terms=__name__.replace('plugin', 'terms')))",
    )
    reg = Registry()
    reg.load_entrypoints()
    with pytest.raises(
        UnknownTermError, match=f"{terms}:Echo is registered as 'lazy_other', but its name is 'lazy_renamed'"
    ):
        reg.get("lazy_other")


def test_strict_mode_raises_at_first_use(site, monkeypatch):
    lazy_dist(site, "distill-lazy-bad", "lazy_bad", "lazy_no_such_module:Echo")
    monkeypatch.setenv("DISTILL_STRICT_PLUGINS", "1")
    reg = Registry()
    reg.load_entrypoints()  # the reference is well formed: nothing fails yet
    with pytest.raises(
        PluginError,
        match=r"lazy_bad \(distill-lazy-bad==0.1\): term 'lazy_bad' "
        r"\(lazy_no_such_module:Echo\): ModuleNotFoundError",
    ):
        reg.get("lazy_bad")


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "register('lazy_x')",
            "register('lazy_x'): expected a LossTerm subclass, or a term's name and where its class "
            "lives as 'package.module:ClassName'",
        ),
        (
            "register('lazy_x', 'no_colon')",
            "register('lazy_x', 'no_colon'): expected where the term's class lives as "
            "'package.module:ClassName', as an entry point writes it",
        ),
        ("register('1x', 'mod:Cls')", "register('1x', 'mod:Cls'): a term's name must be a Python identifier string"),
    ],
)
def test_a_malformed_reference_is_a_broken_plugin_at_discovery(site, body, message):
    lazy_dist(site, "distill-lazy-form", "lazy_x", body=body)
    reg = Registry()
    reg.load_entrypoints()
    assert [b.error for b in reg.broken] == [f"PluginError: {message}"]


def test_two_references_to_one_name_conflict_unless_they_point_at_one_class(site):
    first = lazy_dist(site, "distill-lazy-a", "lazy_twin")
    lazy_dist(site, "distill-lazy-b", "lazy_twin")
    reg = Registry()
    reg.load_entrypoints()
    with pytest.raises(UnknownTermError) as err:
        reg.get("lazy_twin")
    assert "distill-lazy-a==0.1" in str(err.value) and "distill-lazy-b==0.1" in str(err.value)
    assert f"{first}.Echo" in str(err.value)

    same = Registry()
    module = type(sys)("lazy_twice")
    from distill_core import hookimpl

    module.distill_loss_terms = hookimpl(
        lambda register: (register("lazy_twin", f"{first}:Echo"), register("lazy_twin", f"{first}:Echo"))
    )
    same.register_plugin(module)
    assert same.conflicts == {} and same.get("lazy_twin").cls.__module__ == first


def test_the_shipped_plugins_import_no_term_module_at_discovery():
    """A fresh process, the real installed distributions: discovery leaves every lazily registered plugin's
    term modules (and auraloss itself) unimported; building the default recipe imports only its terms'."""
    script = (
        "import sys, distill_core\nregistry = distill_core.get_registry()\n"
        "heavy = ('auraloss', 'distill_auraloss.configs', 'distill_mel.terms', 'distill_stoi.terms',\n"
        "         'distill_discriminators.term', 'distill_discriminators.mpd')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print(all(n in registry for n in ('auraloss_mrstft', 'mel', 'stoi', 'adversarial')))\n"
        "distill_core.CombinedLoss()\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "registry.get('auraloss_mrstft')\nprint('distill_auraloss.configs' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISTILL_PLUGINS", "DISTILL_DISABLE_PLUGIN_AUTOLOAD")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split("\n")[:4] == ["[]", "True", "[]", "True"], out.stderr
