"""Optional dependencies: a feature that needs a missing extra fails in one line naming the pip extra."""

from __future__ import annotations

import importlib
from types import ModuleType

DISTRIBUTION = "distill-core"

#: Which extra of distill-core brings each optional module (the import name, not the distribution name).
EXTRA_OF = {
    "click": "train",
    "tqdm": "train",
    "matplotlib": "train",
    "tensorboard": "train",
    "scipy": "train",
    "pytest": "test",
    "hypothesis": "test",
    "jsonschema": "test",
}


class MissingExtra(ImportError):
    """An optional module is not installed; the message says which extra of distill-core installs it."""


def install_hint(extra: str) -> str:
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def missing_message(module: str, feature: str, extra: str | None = None) -> str:
    """One line: what needs the module, the module, and the pip command that installs it."""
    extra = extra or EXTRA_OF.get(module.partition(".")[0], "all")
    return f"{feature} needs {module}, which is not installed; install the '{extra}' extra: {install_hint(extra)}"


def require(module: str, feature: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingExtra naming the extra, e.g. require("matplotlib", "distill-loss plot")."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or module.split(".")[0] != exc.name.split(".")[0]:
            raise  # a module inside the installed package is broken: that is not a missing extra
        raise MissingExtra(missing_message(module, feature, extra), name=exc.name) from None


def available(module: str) -> bool:
    """Whether ``module`` imports (for features that switch themselves off, like TensorBoard logging)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
