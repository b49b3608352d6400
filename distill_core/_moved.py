"""The module paths this package had before its modules moved into packages, each still importable.

One mechanism for every moved path: a meta-path finder aliases the old name to the new module (the same
module object, so ``isinstance`` checks, pickles and monkeypatches agree) and warns once, naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

#: old module path -> the module that holds its contents now
MOVED: dict[str, str] = {
    f"distill_core.{old}": f"distill_core.{new}"
    for old, new in {
        "atomic": "files.atomic",
        "checkpoint_io": "files.checkpoint",
        "gcpause": "util.gcpause",
        "lazy": "util.lazy",
        "extras": "util.extras",
        "schedules": "config.schedules",
        "groups": "config.groups",
        "layouts": "terms.layouts",
        "pit": "terms.pit",
        "frames": "dsp.frames",
        "mel": "dsp.mel",
        "hookspecs": "registry.hookspecs",
        "entrypoints": "registry.entrypoints",
        "plugins": "registry.discovery",
        "provenance": "registry.provenance",
        "recipes": "registry.recipes",
        "loss_config": "loss.config",
        "balancer": "loss.balancer",
        "gate": "loss.gate",
        "combined": "loss.combined",
        "schema": "loss.schema",
        "lock": "loss.lockfile",
        "omegaconf_config": "loss.omegaconf_config",
        "epoch": "engine.passes",
        "console": "cli.console",
        "scaffold": "cli.scaffold",
    }.items()
}


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the module at its new path."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.new}; import it from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """The new module ran when it was imported."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the moved paths of ``MOVED`` and nothing else."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install_moved_modules() -> None:
    """Put the finder on ``sys.meta_path`` once per process."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
