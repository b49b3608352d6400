"""Plugin pins (``required_plugins = ["distill-stft>=0.1"]``) checked against what is installed."""

from __future__ import annotations

from importlib import metadata
from typing import Iterable

from .config import Problem


def parse_pins(pins: Iterable[str]) -> list[Problem]:
    """Problems with the pins' syntax (checked at load)."""
    problems: list[Problem] = []
    if not pins:
        return problems
    from packaging.requirements import InvalidRequirement, Requirement  # 17 ms: only when pins are used

    for i, pin in enumerate(pins):
        try:
            Requirement(pin)
        except InvalidRequirement as exc:
            problems.append((f"required_plugins[{i}]", f"not a requirement like 'distill-stft>=0.1': {exc}"))
    return problems


def unmet_pins(pins: Iterable[str]) -> list[Problem]:
    """Problems with what is installed against the pins (checked when a loss is built)."""
    problems: list[Problem] = []
    if not pins:
        return problems
    from packaging.requirements import Requirement

    for i, pin in enumerate(pins):
        req = Requirement(pin)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append((f"required_plugins[{i}]", f"{pin!r} is required but {req.name} is not installed"))
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append((f"required_plugins[{i}]", f"{pin!r} is required but {req.name}=={version} is installed"))
    return problems
