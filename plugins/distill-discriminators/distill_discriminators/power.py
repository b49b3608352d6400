"""Which modules of a discriminator change their own state in a training-mode forward: spectral norm's."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import _SpectralNorm
from torch.nn.utils.spectral_norm import SpectralNorm


def power_iterating(module: nn.Module) -> list[nn.Module]:
    """The submodules whose ``training`` flag turns on a power iteration in their forward: modules under
    ``torch.nn.utils.spectral_norm`` (a forward pre-hook) and the parametrisation of
    ``torch.nn.utils.parametrizations.spectral_norm``."""
    found = []
    for m in module.modules():
        if isinstance(m, _SpectralNorm) or any(isinstance(h, SpectralNorm) for h in m._forward_pre_hooks.values()):
            found.append(m)
    return found
