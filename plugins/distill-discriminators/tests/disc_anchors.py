"""The anchors' own code for the parity tests: installed by `make anchors` (pip --no-deps) into .venv/anchors,
a folder kept off sys.path except here, so nothing else in the project ever imports them.

Stand-ins, each for an import alone, never for the code compared:
- ``torchaudio``: its compiled library is built for another torch and does not load beside torch 2.13 CPU. The
  stand-in is the package's own folder without its ``__init__`` (which loads that library) and a
  ``torchaudio._extension`` saying the library is absent; ``torchaudio.transforms.Spectrogram`` and
  ``torchaudio.functional.spectrogram``, which MS-STFTD and Vocos's MRD call, are torchaudio's own Python.
- ``audiocraft``, ``audiocraft.adversarial``, ``audiocraft.modules``: the packages' folders without their
  ``__init__``s, which import the whole framework (xformers, flashy, transformers ...); ``audiocraft.modules``
  offers what its ``modules/conv.py`` defines. The modules compared (adversarial/discriminators/msstftd.py,
  adversarial/losses.py, modules/conv.py) are audiocraft's files. ``flashy``, imported by losses.py for the
  training wrapper only, is an empty module.
- ``vocos``, ``bigvgan``: the packages' folders without their ``__init__``s (pretrained-model loaders that
  import huggingface_hub); discriminators.py, loss.py and experiment.py are theirs. ``transformers`` (for the
  LR schedule in ``VocosExp.configure_optimizers``, which no test runs) and ``encodec`` (vocos's EnCodec feature
  extractor, which none builds) are empty modules, for experiment.py's imports alone.
- ``flashy``'s ``distrib`` and ``utils.readonly``, which audiocraft's ``AdversarialLoss`` calls around its D
  step and generator pass: no-ops, as in one process.

Every test that reads an anchor goes through ``use_anchors`` (via ``anchor``): one installation of the
stand-ins, complete whichever test runs first in a worker (``torchaudio.transforms`` and
``torchaudio.functional`` are imported there, not by whichever anchor happens to import them first).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from contextlib import nullcontext
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ANCHORS = Path(os.environ.get("DISTILL_ANCHORS", ROOT / ".venv" / "anchors"))


def package_folder(name: str, folder: Path) -> types.ModuleType:
    """A package whose submodules load from ``folder`` but whose ``__init__`` never runs."""
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    module.__file__ = None
    sys.modules[name] = module
    if "." in name:
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, module)
    return module


def use_anchors() -> None:
    """Put the anchors' folder on sys.path (after the project's own packages) and install the stand-ins."""
    if not (ANCHORS / "dac").is_dir():
        pytest.skip(f"the anchors are not installed in {ANCHORS}: run `make anchors`")
    if str(ANCHORS) not in sys.path:
        sys.path.append(str(ANCHORS))
    if "torchaudio" not in sys.modules:
        package_folder("torchaudio", ANCHORS / "torchaudio")
        extension = types.ModuleType("torchaudio._extension")
        extension._IS_TORCHAUDIO_EXT_AVAILABLE = False
        extension._IS_ALIGN_AVAILABLE = False
        extension.fail_if_no_align = lambda f: f
        sys.modules["torchaudio._extension"] = extension
    # torchaudio's own Python, as its __init__ would import them: also when another helper (distill-quantizer's
    # vq_anchors) made the stand-in first, so that anchors reading torchaudio.transforms find it
    for part in ("functional", "transforms"):
        importlib.import_module(f"torchaudio.{part}")
    if "audiocraft" not in sys.modules:
        base = ANCHORS / "audiocraft"
        package_folder("audiocraft", base)
        package_folder("audiocraft.adversarial", base / "adversarial")
        package_folder("audiocraft.modules", base / "modules")
        conv = importlib.import_module("audiocraft.modules.conv")
        sys.modules["audiocraft.modules"].__dict__.update(
            {k: v for k, v in vars(conv).items() if not k.startswith("_")}
        )
        flashy = sys.modules.setdefault("flashy", types.ModuleType("flashy"))
        flashy.distrib = types.SimpleNamespace(  # type: ignore[attr-defined]
            broadcast_model=lambda model: None, eager_sync_model=lambda model: nullcontext()
        )
        flashy.utils = types.SimpleNamespace(readonly=lambda model: nullcontext())  # type: ignore[attr-defined]
    if "transformers" not in sys.modules:  # vocos/experiment.py's import, for code no test runs
        sys.modules["transformers"] = types.ModuleType("transformers")
    if "encodec" not in sys.modules:  # vocos/feature_extractors.py's, for the extractor no test builds
        encodec = sys.modules["encodec"] = types.ModuleType("encodec")
        encodec.EncodecModel = None  # type: ignore[attr-defined]
    for name in ("vocos", "bigvgan"):  # their __init__s import the pretrained-model loaders (huggingface_hub)
        if name not in sys.modules:
            package_folder(name, ANCHORS / name)


def anchor(module: str) -> types.ModuleType:
    """One module of an anchor, imported with the stand-ins in place."""
    use_anchors()
    return importlib.import_module(module)
