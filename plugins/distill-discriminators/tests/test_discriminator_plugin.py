"""A third-party discriminator plugin, installed as a distribution: the core's ``distill`` entry-point group finds
its ``distill_discriminators`` hook (the core declares it; the plugin has no term of its own and is not BROKEN), and
a config names its kind like a built-in one."""

from __future__ import annotations

import torch
from distill_discriminators import Adversarial, AdversarialConfig, hookspecs

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
