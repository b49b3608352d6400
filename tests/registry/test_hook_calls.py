"""The term hook is called as pluggy means it to be: one call over every plugin, with third-party wrappers
around it, and each registration credited to the plugin whose implementation made it."""

from __future__ import annotations

import sys

import pytest

from distill_core.registry.discovery import Registry
from distill_core.testing import write_distribution

TERM = """
import attrs
from distill_core import LossTerm, hookimpl

@attrs.define
class Cfg:
    weight: float = 1.0

class {cls}(LossTerm):
    name = "{term}"
    config_class = Cfg
    requires = ("recon",)
    def forward(self, batch):
        return batch["recon"].mean()

CALLS = []

@hookimpl
def distill_loss_terms(register):
    CALLS.append("{term}")
    {body}
"""

WRAPPER = """
from distill_core import hookimpl

CALLS = []

@hookimpl(wrapper=True)
def distill_loss_terms(register):
    CALLS.append("before")
    result = yield
    CALLS.append("after")
    return result
"""

HELPER = """
def register_all(register, classes):
    for cls in classes:
        register(cls)
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for env in ("DISTILL_STRICT_PLUGINS", "DISTILL_DISABLE_PLUGIN_AUTOLOAD", "DISTILL_PLUGINS"):
        monkeypatch.delenv(env, raising=False)
    return tmp_path


def _term_dist(root, dist: str, module: str, term: str, body: str = "register({cls})") -> None:
    cls = term.title().replace("_", "")
    source = TERM.format(cls=cls, term=term, body=body.format(cls=cls))
    write_distribution(root, dist, "1.0", {module: source}, {term: module})


def test_a_third_party_wrapper_runs_once_around_the_term_hook(site):
    _term_dist(site, "distill-hc-one", "hc_one", "hc_one")
    _term_dist(site, "distill-hc-two", "hc_two", "hc_two")
    write_distribution(site, "distill-hc-wrap", "0.5", {"hc_wrap": WRAPPER}, {"hc_wrap": "hc_wrap"})
    registry = Registry()
    registry.load_entrypoints()
    wrapper, one, two = (sys.modules[m] for m in ("hc_wrap", "hc_one", "hc_two"))
    assert wrapper.CALLS == ["before", "after"]  # one hook call, wrapped once
    assert one.CALLS == ["hc_one"] and two.CALLS == ["hc_two"]
    # a wrapper-only plugin is no BROKEN one
    assert not [b for b in registry.broken if "hc_" in str(b)], registry.broken
    assert str(registry.get("hc_one").provenance) == "distill-hc-one==1.0"
    assert str(registry.get("hc_two").provenance) == "distill-hc-two==1.0"


def test_a_registration_made_through_a_helper_is_credited_to_the_hook_that_called_it(site):
    write_distribution(site, "distill-hc-helper", "2.0", {"hc_helper": HELPER}, {})
    body = "import hc_helper; hc_helper.register_all(register, [{cls}])"
    _term_dist(site, "distill-hc-three", "hc_three", "hc_three", body=body)
    registry = Registry()
    registry.load_entrypoints()
    assert str(registry.get("hc_three").provenance) == "distill-hc-three==1.0"


def test_a_hook_that_raises_is_left_out_and_the_others_are_called_once(site):
    _term_dist(site, "distill-hc-ok", "hc_ok", "hc_ok")
    _term_dist(site, "distill-hc-bad", "hc_bad", "hc_bad", body="raise RuntimeError('boom in the hook')")
    registry = Registry()
    registry.load_entrypoints()
    assert "hc_ok" in registry.terms and "hc_bad" not in registry.terms
    broken = [str(b) for b in registry.broken if "hc_bad" in str(b)]
    assert broken == ["hc_bad (distill-hc-bad==1.0): RuntimeError: boom in the hook"]
    ok = sys.modules["hc_ok"]
    assert ok.CALLS[-1] == "hc_ok"  # called again once the failing plugin was left out, and kept


def test_register_outside_a_hook_is_refused(site):
    _term_dist(site, "distill-hc-keep", "hc_keep", "hc_keep", body="import hc_keep as me; me.KEPT = register")
    registry = Registry()
    registry.load_entrypoints()
    kept = sys.modules["hc_keep"].KEPT
    with pytest.raises(Exception, match=r"called outside a distill_loss_terms\(register\) hook"):
        kept(sys.modules["hc_keep"].HcKeep)
