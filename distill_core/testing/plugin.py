"""The test kit's pytest fixtures, loaded into every pytest run through the ``pytest11`` entry point.

Loading it costs a run nothing measurable: torch and the registry are imported inside the fixtures, when a
test asks for one, never at collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from distill_core.util.extras import require

if TYPE_CHECKING:  # pragma: no cover
    import pytest
else:  # at run time through require: a missing pytest is a MissingExtra naming the extra
    pytest = require("pytest", "the test kit distill_core.testing")

if TYPE_CHECKING:  # pragma: no cover
    from distill_core.registry.discovery import Registry
    from distill_core.terms.base import LossTerm


@pytest.fixture
def distill_registry() -> Iterator[Registry]:
    """An empty registry with entry-point autoload off, installed as the process default for one test."""
    from distill_core.registry.discovery import Registry, reset_registry  # on first use: keeps pytest's start cheap

    registry = Registry()
    old = reset_registry(registry)
    try:
        yield registry
    finally:
        reset_registry(old)


@pytest.fixture
def register_term(distill_registry: Registry) -> Callable[..., type[LossTerm]]:
    """Register in-memory LossTerm classes in the isolated registry: ``register_term(MyTerm)``."""

    def register(*classes: type[LossTerm]) -> type[LossTerm]:
        for cls in classes:
            distill_registry.register_term(cls)
        return classes[-1]

    return register


@pytest.fixture
def sync_counter(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the tensor methods that make the host wait for the device (``item``, ``__bool__``, ``tolist``,
    ...) while the test runs: a per-step loss path should leave every count at 0."""
    import torch  # on first use: keeps pytest's start cheap

    from distill_core.testing.kit import SYNC_METHODS

    counts = {m: 0 for m in SYNC_METHODS}
    for method in SYNC_METHODS:
        original = getattr(torch.Tensor, method)

        def counted(
            self: torch.Tensor, *args: Any, _name: str = method, _original: Any = original, **kwargs: Any
        ) -> Any:
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    return counts
