"""The discriminators this distribution ships, registered through the discriminator hook like any plugin's."""

from __future__ import annotations

from typing import Callable

from .hookspecs import hookimpl
from .mpd import MPD
from .mrd import MRD
from .msd import MSD
from .msstftd import MSSTFTD


@hookimpl
def distill_discriminators(register: Callable[[type], None]) -> None:
    for cls in (MPD, MSD, MRD, MSSTFTD):
        register(cls)
