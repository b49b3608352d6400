"""The discriminators this distribution ships, registered through its own discriminator hook like any plugin's
(the package exports the hook, so discovery of its ``distill`` entry point finds it)."""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from distill_core import hookimpl


@hookimpl
def distill_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Declare the hook this distribution owns: other plugins register discriminators through it."""
    from . import hookspecs  # the hook's spec and the kinds' registry, imported once the core's registry is built

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def distill_discriminators(register: Callable[[type], None]) -> None:
    """MPD, MSD, MRD, MS-STFTD and MS-SB-CQTD."""
    # imported when the hook runs (a config builds the adversarial term), not when discovery finds the hook
    from .cqtd import CQTD
    from .mpd import MPD
    from .mrd import MRD
    from .msd import MSD
    from .msstftd import MSSTFTD

    for cls in (MPD, MSD, MRD, MSSTFTD, CQTD):
        register(cls)


@hookimpl
def distill_plugin_sections(register: Callable[[object], None]) -> None:
    """The discriminator kinds, for ``distill-loss plugins``: each kind's distribution, version and options,
    and the discriminator plugins that are BROKEN."""
    from .hookspecs import listing_section  # the kinds' registry, imported when the listing is asked for

    register(listing_section())
