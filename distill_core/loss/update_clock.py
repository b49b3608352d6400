"""When each stateful term's update step runs: a host-side call counter and seeded generators, carried in a
loss's ``state_dict()`` so that a resumed run makes the same decisions."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from torch import nn

from distill_core.config.schedules import UpdateSchedule


class UpdateClock(nn.Module):
    """The training-call counter and one seeded generator per term whose schedule draws; host-side only,
    carried in ``state_dict()`` (as extra state) so that a resumed run makes the same decisions."""

    def __init__(self, schedules: Mapping[str, UpdateSchedule]) -> None:
        super().__init__()
        self.schedules = dict(schedules)
        self.calls = 0
        self.generators = {
            name: random.Random(f"{s.seed}:{name}") for name, s in self.schedules.items() if s.probability < 1.0
        }
        plain = all(s == UpdateSchedule() for s in self.schedules.values())
        self._every_call: tuple[str, ...] | None = tuple(self.schedules) if plain else None

    def tick(self) -> tuple[str, ...]:
        """The terms whose update runs at this call, in config order; advances the counter."""
        step = self.calls
        self.__dict__["calls"] = step + 1  # a plain int: past nn.Module.__setattr__'s checks, once per batch
        if self._every_call is not None:
            return self._every_call
        due = []
        for name, schedule in self.schedules.items():
            if not schedule.due(step):
                continue
            generator = self.generators.get(name)
            if generator is None or generator.random() < schedule.probability:
                due.append(name)
        return tuple(due)

    def get_extra_state(self) -> dict[str, Any]:
        return {"calls": self.calls, "generators": {n: g.getstate() for n, g in self.generators.items()}}

    def set_extra_state(self, state: Any) -> None:
        saved = state.get("generators", {}) if isinstance(state, Mapping) else {}
        missing = sorted(set(self.generators) - set(saved))
        if not isinstance(state, Mapping) or "calls" not in state or missing:
            raise ValueError(
                f"update schedule state: expected the call count and a generator for each of "
                f"{', '.join(sorted(self.generators)) or 'no terms'}; the saved state has "
                f"{', '.join(sorted(saved)) or 'none'} (saved with another config's schedules?)"
            )
        self.calls = int(state["calls"])
        for name, generator in self.generators.items():
            generator.setstate(_as_tuples(saved[name]))

    def extra_repr(self) -> str:
        return f"calls={self.calls}, schedules={self.schedules}"


def _as_tuples(value: Any) -> Any:
    """A generator state after a round trip that may have made its tuples lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value
