"""The anchors' own quantizers for the parity tests, imported from .venv/anchors (`make anchors`, pip --no-deps).

The folder is kept off sys.path except here. Stand-ins, each for an import alone, never for the code compared:
- ``torchaudio``: its compiled library is built for another torch; ``dac/__init__`` imports audiotools, which
  imports torchaudio. The stand-in is torchaudio's own folder without its ``__init__`` (as
  plugins/distill-discriminators/tests/disc_anchors.py sets it up; whichever helper runs first installs it).
- ``audiocraft.quantization``: that folder as a package, without ``audiocraft/__init__`` (which imports the whole
  framework) and without claiming the name ``audiocraft`` itself, which disc_anchors.py stands in for in its own
  way when its tests share the process; the compared files, quantization/core_vq.py and quantization/vq.py, are
  audiocraft's own.
- ``flashy.distrib.broadcast_tensors``: audiocraft's codebook calls it after k-means init and dead-code expiry to
  keep ranks equal; flashy is not installed, and in one process the real function returns at once, as this
  stand-in does.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ANCHORS = Path(os.environ.get("DISTILL_ANCHORS", ROOT / ".venv" / "anchors"))


def _package_folder(name: str, folder: Path) -> types.ModuleType:
    """A package whose submodules load from ``folder`` but whose ``__init__`` never runs."""
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    module.__file__ = None
    sys.modules[name] = module
    return module


def _single_process_broadcast(tensors: Iterable[object], src: int = 0) -> None:
    """flashy.distrib.broadcast_tensors outside torch.distributed: nothing to do."""


def _use(package: str) -> None:
    if not (ANCHORS / package).is_dir():
        pytest.skip(f"the anchor package {package!r} is not installed in {ANCHORS}: run `make anchors`")
    if str(ANCHORS) not in sys.path:
        sys.path.append(str(ANCHORS))
    if "torchaudio" not in sys.modules and (ANCHORS / "torchaudio").is_dir():
        _package_folder("torchaudio", ANCHORS / "torchaudio")
        extension = types.ModuleType("torchaudio._extension")
        extension._IS_TORCHAUDIO_EXT_AVAILABLE = False  # type: ignore[attr-defined]
        extension._IS_ALIGN_AVAILABLE = False  # type: ignore[attr-defined]
        extension.fail_if_no_align = lambda f: f  # type: ignore[attr-defined]
        sys.modules["torchaudio._extension"] = extension
        for part in ("functional", "transforms"):  # the stand-in complete, as disc_anchors.py makes it
            importlib.import_module(f"torchaudio.{part}")
    if package == "audiocraft":
        if "audiocraft" not in sys.modules and "audiocraft.quantization" not in sys.modules:
            # the immediate parent in sys.modules is all the import system looks for
            _package_folder("audiocraft.quantization", ANCHORS / "audiocraft" / "quantization")
        # checked on every use: another test may have replaced flashy.distrib with helpers of its own
        flashy = sys.modules.setdefault("flashy", types.ModuleType("flashy"))
        if getattr(flashy, "distrib", None) is None:
            flashy.distrib = types.ModuleType("flashy.distrib")  # type: ignore[attr-defined]
        if not hasattr(flashy.distrib, "broadcast_tensors"):
            flashy.distrib.broadcast_tensors = _single_process_broadcast


def dac_quantize() -> types.ModuleType:
    """descript-audio-codec 1.0.0's dac/nn/quantize.py, or a skip saying why not."""
    _use("dac")
    return importlib.import_module("dac.nn.quantize")


def audiocraft_quantization() -> tuple[types.ModuleType, types.ModuleType]:
    """audiocraft 1.3.0's quantization/core_vq.py and quantization/vq.py, or a skip saying why not."""
    _use("audiocraft")
    return importlib.import_module("audiocraft.quantization.core_vq"), importlib.import_module(
        "audiocraft.quantization.vq"
    )
