"""``distill-loss new-plugin NAME``: a plugin distribution that installs and passes its test unedited."""

from __future__ import annotations

import keyword
from pathlib import Path

from distill_core.cli.scaffold_discriminator import FILES as DISCRIMINATOR_FILES
from distill_core.config.converter import ConfigError

PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "distill-{dash}"
version = "0.1.0"
description = "The {name} loss term for distill"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["distill-core>=0.1", "torch>=2.1"]

[project.optional-dependencies]
test = ["pytest>=7"]

[project.entry-points.distill]
{name} = "distill_{name}"

[tool.setuptools]
packages = ["distill_{name}"]
"""

MODULE = '''"""distill plugin: the ``{name}`` loss term."""

from __future__ import annotations

import attrs
import torch

from distill_core import LossTerm, Weight, hookimpl
from distill_core.terms.base import Batch, check_pair

__version__ = "0.1.0"


@attrs.define
class {cls}Config:
    """Settings of the {name} term; every field can be set in a config file under [terms.{name}]."""

    weight: Weight = 1.0


class {cls}Loss(LossTerm):
    """The {name} loss: how far recon is from target (a placeholder body, the mean squared error; write yours
    and say here what it measures and why)."""

    name = "{name}"
    config_class = {cls}Config
    requires = ("recon", "target")  # the batch keys forward reads; a config maps them with inputs = {{...}}
    layouts = {{"recon": "B, C, F, T", "target": "B, C, F, T"}}  # checked against the batch at build time
    zero_at_identity = True  # 0 when recon == target; the test kit checks it

    def forward(self, batch: Batch) -> torch.Tensor:
        recon, target = check_pair(self.name, batch, "recon", "target", "B, C, F, T")
        return (recon - target).pow(2).mean()


@hookimpl
def distill_loss_terms(register) -> None:
    register({cls}Loss)
'''

TEST = '''import torch

from distill_core.testing import check_discovery, check_term
from distill_{name} import {cls}Loss


def make_batch(dtype, device):
    g = torch.Generator().manual_seed(0)
    return {{"recon": torch.randn(2, 2, 8, 6, generator=g, dtype=dtype).to(device),
             "target": torch.randn(2, 2, 8, 6, generator=g, dtype=dtype).to(device)}}


def test_conformance():
    check_term({cls}Loss, make_batch)


def test_discovery():
    """Installed (pip install -e .), distill finds the term through the 'distill' entry-point group."""
    check_discovery({cls}Loss, "distill-{dash}")
'''

README = """# distill-{dash}

The `{name}` loss term for distill.

    pip install -e .
    distill-loss plugins        # lists {name}

Use it from a config file:

    [terms.{name}]
    weight = 0.5

Its output key is `{name}_loss`. Run the conformance and discovery tests with `pytest` (installed first).
"""


def scaffold(name: str, directory: Path, discriminator: bool = False) -> Path:
    """Write distill-<name>/ under ``directory``: a loss term's distribution, or with ``discriminator`` one that
    registers a discriminator kind; refuse names that are not identifiers or already exist."""
    if not (name.isidentifier() and name.islower() and not keyword.iskeyword(name)):
        raise ConfigError([("NAME", f"expected a lowercase Python identifier such as 'sisdr', got {name!r}")])
    dash = name.replace("_", "-")
    root = Path(directory) / f"distill-{dash}"
    if root.exists():
        raise ConfigError([("--dir", f"{root} already exists; choose another NAME or --dir")])
    cls = "".join(part.capitalize() for part in name.split("_"))
    fields = {"name": name, "dash": dash, "cls": cls}
    files = {
        "pyproject.toml": PYPROJECT,
        f"distill_{name}/__init__.py": MODULE,
        f"tests/test_{name}.py": TEST,
        "README.md": README,
    }
    if discriminator:
        files = {rel.format(**fields): template for rel, template in DISCRIMINATOR_FILES.items()}
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # "x": a file that appeared since the check above is the user's, never replaced
            with path.open("x", encoding="utf-8") as fh:
                fh.write(template.format(**fields))
        except FileExistsError:
            raise ConfigError([("--dir", f"{path} already exists (made while scaffolding); it was kept")]) from None
    return root
