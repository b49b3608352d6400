"""``distill-loss new-plugin NAME --discriminator``'s templates: a distribution that registers one discriminator
kind through distill-discriminators' ``distill_discriminators`` hook, and passes its own tests unedited (the test
kit on the adversarial term built with it, and discovery)."""

from __future__ import annotations

PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "distill-{dash}"
version = "0.1.0"
description = "The {name} discriminator for distill's adversarial term"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["distill-core>=0.1", "distill-discriminators>=0.1", "torch>=2.4", "attrs>=23.1"]

[project.optional-dependencies]
test = ["pytest>=7"]

[project.entry-points.distill]
{name} = "distill_{name}"

[tool.setuptools]
packages = ["distill_{name}"]
"""

MODULE = '''"""distill plugin: the ``{name}`` discriminator, a kind of the adversarial term's ensemble
(``kind = "{name}"`` in ``[[terms.adversarial.discriminators]]``)."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
from distill_core import InvalidConfig, hookimpl
from distill_discriminators import CommonOptions, Discriminator, SubOutput
from torch import nn
from torch.nn import functional as F

__version__ = "0.1.0"


@attrs.define
class {cls}Config(CommonOptions):
    """Options of the {name} discriminator, set under ``options = {{...}}`` of its ensemble entry; the base class
    adds ``normalize_input`` and ``first_layer_features``.

    ``scales``: one sub-discriminator per average-pooling factor (1: the signal as it is). ``channels``: the
    first conv's output channels. ``width``: a channel multiplier; the adversarial term's ``width`` fills it
    unless the options set one. (A placeholder design: write yours and say here what each option does.)
    """

    scales: tuple[int, ...] = (1, 2, 4)
    channels: int = 16
    width: float = 1.0
    negative_slope: float = 0.2

    def __attrs_post_init__(self) -> None:
        problems = [
            (f"scales[{{i}}]", f"expected an integer >= 1, got {{s!r}}") for i, s in enumerate(self.scales) if s < 1
        ]
        if not self.scales:
            problems.append(("scales", "expected at least one pooling factor"))
        if self.channels < 1:
            problems.append(("channels", f"expected an integer >= 1, got {{self.channels!r}}"))
        if not 0 < self.width < float("inf"):
            problems.append(("width", f"expected a channel multiplier > 0, got {{self.width!r}}"))
        if problems:
            raise InvalidConfig(problems)  # every problem at once; the core prefixes each with its config path


class {cls}Scale(nn.Module):
    """One sub-discriminator: the signal average-pooled by ``factor``, three convs, a one-channel logit conv."""

    def __init__(self, factor: int, config: {cls}Config) -> None:
        super().__init__()
        self.factor, self.config = factor, config
        c = max(1, int(config.channels * config.width))
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(1, c, 15, padding=7),
                nn.Conv1d(c, 2 * c, 41, stride=4, padding=20),
                nn.Conv1d(2 * c, 2 * c, 5, padding=2),
            ]
        )
        self.post = nn.Conv1d(2 * c, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> SubOutput:
        if self.factor > 1:
            x = F.avg_pool1d(x, self.factor, self.factor, ceil_mode=True)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.config.negative_slope)
            features.append(x)
        if not self.config.first_layer_features:  # the subclass's job: the base class cannot see its layers
            features = features[1:]
        return SubOutput(features, self.post(x))


class {cls}(Discriminator):
    """The {name} discriminator: one {cls}Scale per pooling factor."""

    name = "{name}"  # the kind a config names
    config_class = {cls}Config

    def __init__(self, config: {cls}Config) -> None:
        super().__init__(config)
        self.subs = nn.ModuleList({cls}Scale(f, config) for f in config.scales)

    def judge(self, x: torch.Tensor) -> list[SubOutput]:
        """``x`` is ``[B * C, 1, N]``: channels folded into the batch, ``normalize_input`` already applied."""
        return [sub(x) for sub in self.subs]


@hookimpl
def distill_discriminators(register: Callable[[type], None]) -> None:
    register({cls})
'''

TEST = '''import torch
from distill_core.testing import check_term
from distill_discriminators import AdversarialConfig, AdversarialLoss, SubOutput, discriminators

from distill_{name} import {cls}, {cls}Config


def test_it_judges_each_channel_as_a_signal():
    torch.manual_seed(0)
    d = {cls}({cls}Config(width=0.25))
    subs = d(torch.randn(2, 3, 512))
    assert len(subs) == len(d.config.scales)
    for sub in subs:
        assert isinstance(sub, SubOutput) and sub.logits.shape[:2] == (6, 1)
        assert len(sub.features) == 3 and all(f.shape[0] == 6 for f in sub.features)
    without_first = {cls}({cls}Config(width=0.25, first_layer_features=False))
    assert all(len(sub.features) == 2 for sub in without_first(torch.randn(1, 1, 64)))


def waveforms(dtype, device):
    target = torch.randn(2, 1, 512, dtype=dtype, device=device)
    return {{"recon": target + 0.3 * torch.randn_like(target), "target": target}}


def test_conformance():
    """The adversarial term built with this kind passes the test kit: gradients, float64 gradcheck, autocast,
    torch.compile, and the stateful checks (D's step, its state through state_dict and back)."""
    config = AdversarialConfig(preset="dac", discriminators=[{{"kind": "{name}"}}], width=0.125)
    check_term(AdversarialLoss, waveforms, config)


def test_discovery():
    """Installed (pip install -e .), the adversarial term finds the kind through the 'distill' entry-point group."""
    registry = discriminators()
    assert registry.get("{name}") is {cls}
    provenance = registry.provenance("{name}")
    assert (provenance.distribution, provenance.version) == ("distill-{dash}", "0.1.0")
'''

README = """# distill-{dash}

The `{name}` discriminator for distill's adversarial term (distill-discriminators).

    pip install -e .
    distill-loss plugins        # lists {name} among the discriminator kinds, with its options

Use it from a config file, alone or beside the built-in kinds:

    [terms.adversarial]
    preset = "dac"

    [[terms.adversarial.discriminators]]
    kind = "{name}"
    options = {{ scales = [1, 2, 4], width = 0.5 }}

Run the conformance and discovery tests with `pytest` (installed first).
"""

FILES = {
    "pyproject.toml": PYPROJECT,
    "distill_{name}/__init__.py": MODULE,
    "tests/test_{name}.py": TEST,
    "README.md": README,
}
