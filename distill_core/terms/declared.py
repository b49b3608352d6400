"""What a term class declares, read in one place without building it: its outputs and whether it is stateful.

The loss, ``check``, the plan, the schema and the test kit all ask these of a class; the answers come from here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["declared_outputs", "is_stateful"]


def declared_outputs(term: Any) -> tuple[str, ...]:
    """A multi-output term's output names (class attribute ``outputs``); ``()`` for a term with one output."""
    return tuple(getattr(term, "outputs", ()) or ())


def is_stateful(term: Any) -> bool:
    """Whether a term class or instance has an update step of its own (the one test of the contract)."""
    return callable(getattr(term, "update", None))
