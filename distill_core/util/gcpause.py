"""A pause of Python's cyclic garbage collector around discovery's burst of short-lived objects.

With torch imported, one full collection walks millions of objects (tens of ms) and frees nothing that
reference counting would not; discovery and building the recipe trigger several. The collector resumes
afterwards, as it was.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector for the block; re-enable it only if it was enabled."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
