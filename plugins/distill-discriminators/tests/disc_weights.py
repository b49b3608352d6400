"""Moving an anchor's weights into our modules: the same layers, their parameters renamed."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import nn

WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def renamed(name: str, ours: Mapping[str, torch.Tensor], unwrap: Callable[[str], str] = lambda n: n) -> str:
    """An anchor's parameter name as ours: the older weight_norm's g / v become the parametrisation's
    original0 / original1; spectral norm's weight_orig / weight_u / weight_v keep their names."""
    name = unwrap(name)
    head, _, leaf = name.rpartition(".")
    if leaf in WEIGHT_NORM and f"{head}.weight_orig" not in ours:
        return f"{head}.{WEIGHT_NORM[leaf]}"
    return name


def load_anchor(module: nn.Module, anchor: nn.Module, unwrap: Callable[[str], str] = lambda n: n) -> None:
    """Copy every parameter (and spectral-norm buffer) of ``anchor`` into ``module``; every one of ours must
    be given, with its shape."""
    load_state(module, anchor.state_dict(), unwrap)


def load_state(
    module: nn.Module, state: Mapping[str, torch.Tensor], unwrap: Callable[[str], str] = lambda n: n
) -> None:
    """Load an anchor's state_dict (its names) into ``module``; every one of ours must be given, with its shape."""
    ours = module.state_dict()
    theirs = {renamed(k, ours, unwrap): v for k, v in state.items() if not k.endswith("window")}
    assert set(theirs) == set(ours), (sorted(set(theirs) ^ set(ours)))[:10]
    module.load_state_dict(theirs)


def dac_unwrap(name: str) -> str:
    """DAC wraps each activated conv in nn.Sequential(conv, LeakyReLU): 'convs.3.0.bias' is our 'convs.3.bias'."""
    return re.sub(r"\.0\.(weight_g|weight_v|bias)$", r".\1", name)


def audiocraft_unwrap(name: str) -> str:
    """audiocraft's NormConv2d holds the conv as '.conv'."""
    return name.replace(".conv.", ".")


def randomise(module: nn.Module, seed: int = 0) -> None:
    """Every parameter drawn anew (biases too, which start at 0 in some anchors), the same on both sides."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (0.5 if p.dim() == 1 else 0.0))


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, what: str, tol: float = 1e-5) -> None:
    """Equal to ``tol`` relative to the reference's largest magnitude (and in shape)."""
    assert ours.shape == theirs.shape, f"{what}: shape {list(ours.shape)} vs {list(theirs.shape)}"
    scale = max(theirs.abs().max().item(), 1e-12)
    err = (ours - theirs).abs().max().item()
    assert err <= tol * scale, f"{what}: max difference {err:.3g} > {tol} x {scale:.3g}"
