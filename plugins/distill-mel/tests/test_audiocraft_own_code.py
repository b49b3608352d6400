"""audiocraft_msspec against audiocraft 1.3.0's own MultiScaleMelSpectrogramLoss, run over torchaudio 2.1.1's own
MelSpectrogram: their Python source, read from the published archives and executed on this CPU torch.

torchaudio's compiled parts cannot load beside torch 2.13 (the registry's torchaudio is a CUDA build for another
torch), but Spectrogram, MelScale and MelSpectrogram are plain Python over torch.stft: the test takes those
functions and classes from torchaudio's files by name (ast), and runs audiocraft's specloss.py with them.
Skipped unless DISTILL_AUDIOCRAFT_SOURCES names a folder holding both archives:

    pip download --no-deps --no-binary :all: audiocraft==1.3.0 -d DIR
    pip download --no-deps torchaudio==2.1.1 --python-version 3.11 --only-binary :all: -d DIR
"""

from __future__ import annotations

import ast
import math
import os
import sys
import tarfile
import types
import typing
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from distill_mel import AudiocraftConfig, AudiocraftMsspecLoss

SOURCES = os.environ.get("DISTILL_AUDIOCRAFT_SOURCES")
HOW = (
    "set DISTILL_AUDIOCRAFT_SOURCES to a folder with audiocraft-1.3.0.tar.gz and torchaudio-2.1.1-*.whl "
    "(pip download --no-deps; see this file's docstring)"
)


def archives() -> tuple[Path, Path] | None:
    if not SOURCES:
        return None
    folder = Path(SOURCES)
    sdist = folder / "audiocraft-1.3.0.tar.gz"
    wheels = sorted(folder.glob("torchaudio-2.1.1-*.whl"))
    return (sdist, wheels[0]) if sdist.is_file() and wheels else None


pytestmark = pytest.mark.skipif(archives() is None, reason=HOW)


def picked(source: str, filename: str, names: set[str], namespace: dict) -> dict:
    """Execute only the top-level functions and classes called ``names`` of a source file into ``namespace``."""
    tree = ast.parse(source)
    body = [node for node in tree.body if getattr(node, "name", None) in names]
    assert {node.name for node in body} == names, f"{filename} lacks {names - {n.name for n in body}}"
    exec(compile(ast.Module(body=body, type_ignores=[]), filename, "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def audiocraft(monkeypatch_module):
    """audiocraft.losses.specloss as published, its torchaudio and pad_for_conv1d imports served by their own
    code; and the compression solver's config."""
    sdist, wheel = archives()
    with tarfile.open(sdist) as tar:
        read = lambda path: tar.extractfile(f"audiocraft-1.3.0/{path}").read().decode()  # noqa: E731
        specloss, conv = read("audiocraft/losses/specloss.py"), read("audiocraft/modules/conv.py")
        solver = read("config/solver/compression/default.yaml")
    with zipfile.ZipFile(wheel) as whl:
        functional = whl.read("torchaudio/functional/functional.py").decode()
        transforms = whl.read("torchaudio/transforms/_transforms.py").decode()

    ta = dict(
        torch=torch,
        math=math,
        warnings=warnings,
        Tensor=torch.Tensor,
        **{k: getattr(typing, k) for k in ("Optional", "Union", "Callable", "List", "Tuple", "Sequence")},
    )
    picked(
        functional,
        "torchaudio/functional/functional.py",
        {
            "spectrogram",
            "_get_spec_norms",
            "melscale_fbanks",
            "_hz_to_mel",
            "_mel_to_hz",
            "_create_triangular_filterbank",
        },
        ta,
    )
    ta["F"] = types.SimpleNamespace(spectrogram=ta["spectrogram"], melscale_fbanks=ta["melscale_fbanks"])
    picked(transforms, "torchaudio/transforms/_transforms.py", {"Spectrogram", "MelScale", "MelSpectrogram"}, ta)
    padding = picked(
        conv,
        "audiocraft/modules/conv.py",
        {"get_extra_padding_for_conv1d", "pad_for_conv1d"},
        dict(torch=torch, math=math, F=torch.nn.functional, tp=typing),
    )

    modules = {
        "torchaudio": types.ModuleType("torchaudio"),
        "torchaudio.transforms": types.ModuleType("torchaudio.transforms"),
        "audiocraft_oracle": types.ModuleType("audiocraft_oracle"),
        "audiocraft_oracle.modules": types.ModuleType("audiocraft_oracle.modules"),
        "audiocraft_oracle.losses": types.ModuleType("audiocraft_oracle.losses"),
    }
    modules["torchaudio.transforms"].MelSpectrogram = ta["MelSpectrogram"]
    modules["torchaudio"].transforms = modules["torchaudio.transforms"]
    modules["audiocraft_oracle.modules"].pad_for_conv1d = padding["pad_for_conv1d"]
    for name, module in modules.items():
        module.__path__ = []
        monkeypatch_module.setitem(sys.modules, name, module)
    spec = types.ModuleType("audiocraft_oracle.losses.specloss")
    spec.__package__ = "audiocraft_oracle.losses"
    exec(compile(specloss, "audiocraft/losses/specloss.py", "exec"), spec.__dict__)
    return spec.MultiScaleMelSpectrogramLoss, solver, ta["melscale_fbanks"]


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_the_defaults_are_the_compression_solvers_msspec(audiocraft):
    omegaconf = pytest.importorskip(
        "omegaconf", reason="audiocraft reads its configs with OmegaConf (YAML 1.2 numbers: 1e-5 is a float)"
    )
    solver = omegaconf.OmegaConf.create(audiocraft[1])
    assert solver.losses.msspec == 2.0
    section = {k: solver.msspec[k] for k in solver.msspec if k != "sample_rate"}  # sample_rate: ??? (required)
    ours = AudiocraftConfig()
    assert section == {k: getattr(ours, k) for k in section}


OPTIONS = [
    dict(sample_rate=24000, f_min=64, normalized=True, alphas=False),
    dict(sample_rate=32000),
    dict(sample_rate=22051, f_min=64, normalized=True, alphas=False),
]


def both(audiocraft, options, dtype, shared_filters: bool):
    """(value, gradient) of audiocraft's loss and of the term on the same noise; with ``shared_filters`` the
    term's filterbanks replace torchaudio's inside audiocraft's modules."""
    loss_class = audiocraft[0]
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(2, 2, 4000, generator=g, dtype=dtype) for _ in range(2))
    term = AudiocraftMsspecLoss(AudiocraftConfig(**{"f_min": 0.0, "normalized": False, "alphas": True, **options}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchaudio warns about empty filters at window 64
        theirs = loss_class(**options)
    if shared_filters:
        for i, scale in enumerate(term.loss.scales):
            for wrapper in (theirs.l1s[i], theirs.l2s[i]):
                wrapper.mel_transform.mel_scale.fb.copy_(scale.fb.T)
    out = []
    for fn in (theirs.to(dtype), lambda a, b: term.to(dtype)({"recon": a, "target": b})):
        xx = x.clone().requires_grad_(True)
        value = fn(xx, y)
        value.backward()
        out.append((value.detach(), xx.grad))
    return out


@pytest.mark.parametrize(
    "options", OPTIONS, ids=["solver's msspec at 24 kHz", "class defaults at 32 kHz", "odd rate 22051 Hz"]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_with_the_same_filters_audiocrafts_own_code_gives_the_same_value_and_gradient(audiocraft, options, dtype):
    (v1, g1), (v2, g2) = both(audiocraft, options, dtype, shared_filters=True)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(v2, v1, rtol=tol, atol=0)
    torch.testing.assert_close(g2, g1, rtol=tol, atol=tol * float(g1.abs().max()))


@pytest.mark.parametrize(
    "options", OPTIONS, ids=["solver's msspec at 24 kHz", "class defaults at 32 kHz", "odd rate 22051 Hz"]
)
def test_with_torchaudios_own_filters_the_value_differs_by_their_float32_rounding(audiocraft, options):
    """torchaudio builds its filterbank in float32 (within 6.9e-6 of librosa's float64 one, cast): values agree to
    1e-6; gradients where normalised mels sit near floor_level are more sensitive (seen: up to 5.8e-4 of the
    largest entry at the solver's defaults on this noise), and are compared with the same filters above."""
    (v1, _), (v2, _) = both(audiocraft, options, torch.float64, shared_filters=False)
    torch.testing.assert_close(v2, v1, rtol=1e-6, atol=0)


def test_the_filterbank_is_torchaudios_to_its_float32_rounding(audiocraft):
    melscale_fbanks = audiocraft[2]
    for rate in (16000, 22051, 24000, 44100):
        term = AudiocraftMsspecLoss(AudiocraftConfig(sample_rate=rate))
        for scale in term.loss.scales:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                theirs = melscale_fbanks(scale.window_length // 2 + 1, 64.0, float(rate // 2), 64, rate).T
            assert float((scale.fb - theirs).abs().max()) < 1e-5
