"""The standard audio-VAE recipe, written as data for the generic config (the seed's defaults)."""

from __future__ import annotations

from typing import ClassVar

import attrs

from .schedules import Weight

# Which distribution provides each term the recipe names, for "pip install ..." hints.
PROVIDERS: dict[str, str] = {
    "stft": "distill-stft",
    "mag_recon": "distill-mag-recon",
    "if_recon": "distill-if-recon",
    "kl": "distill-kl",
}


@attrs.define
class GroupConfig:
    """Terms summed under one weight; the group's output ``key`` is its contribution to the total."""

    kind: ClassVar[str] = "sum"
    weight: Weight = 1.0
    members: tuple[str, ...] = ()
    key: str | None = None

    def member_weights(self) -> dict[str, float]:
        """Each member's weight inside the group, before the group's own weight."""
        return {m: 1.0 for m in self.members}


@attrs.define
class ReconLossConfig(GroupConfig):
    """The recipe's reconstruction group: weight * (magnitude_weight * mag_recon + if_weight * if_recon)."""

    kind: ClassVar[str] = "reconstruction"
    weight: Weight = 0.1
    magnitude_weight: float = 1.0
    if_weight: float = 0.5
    members: tuple[str, ...] = ("mag_recon", "if_recon")
    key: str | None = "recon_loss"

    def member_weights(self) -> dict[str, float]:
        return {"mag_recon": self.magnitude_weight, "if_recon": self.if_weight}


GROUP_KINDS: dict[str, type] = {"sum": GroupConfig, "reconstruction": ReconLossConfig}

VAE_RECIPE: dict = {
    "terms": {
        "stft": {"weight": 1.0, "fft_sizes": [512, 1024, 2048], "hop_sizes": [128, 256, 512],
                 "win_lengths": [512, 1024, 2048]},
        "mag_recon": {"weight": 1.0},
        "if_recon": {"weight": 1.0},
        "kl": {"weight": {"schedule": "linear_warmup", "max": 0.01, "warmup_fraction": 0.3}, "free_bits": 0.1},
    },
    "groups": {"reconstruction": {"kind": "reconstruction"}},
    "fallback": "reconstruction",
    # What the training loop's batch holds: spectrograms, latents, and (computed only when a term reads
    # them) the waveforms of the reconstruction and of the target.
    "batch": {"recon": "B, 2, F, T", "target": "B, 2, F, T", "mu": "B, D", "logvar": "B, D",
              "recon_wave": "B, 1, N", "target_wave": "B, 1, N"},
}

RECIPES: dict[str, dict] = {"vae": VAE_RECIPE, "none": {"terms": {}, "groups": {}, "fallback": None, "batch": {}}}
