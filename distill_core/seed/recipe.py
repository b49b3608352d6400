"""The seed's audio-VAE recipe as data: the entry point ``vae`` of the group ``distill.recipes``."""

from __future__ import annotations

from distill_core.registry.recipes import Recipe
from distill_core.seed.layout import GROUP_KIND, upgrade

# The reconstruction group: weight * (magnitude_weight * mag_recon + if_weight * if_recon), as the seed sums it.
RECONSTRUCTION = {"weight": 0.1, "members": {"mag_recon": 1.0, "if_recon": 0.5}, "key": "recon_loss"}

VAE = Recipe(
    terms={
        "stft": {
            "weight": 1.0,
            "fft_sizes": [512, 1024, 2048],
            "hop_sizes": [128, 256, 512],
            "win_lengths": [512, 1024, 2048],
        },
        "mag_recon": {"weight": 1.0},
        "if_recon": {"weight": 1.0},
        "kl": {"weight": {"schedule": "linear_warmup", "max": 0.01, "warmup_fraction": 0.3}, "free_bits": 0.1},
    },
    groups={"reconstruction": RECONSTRUCTION},
    fallback="reconstruction",
    # What the training loop's batch holds: spectrograms, latents, and (computed only when a term reads
    # them) the waveforms of the reconstruction and of the target.
    batch={
        "recon": "B, 2, F, T",
        "target": "B, 2, F, T",
        "mu": "B, D",
        "logvar": "B, D",
        "recon_wave": "B, 1, N",
        "target_wave": "B, 1, N",
    },
    distributions={
        "stft": "distill-stft",
        "mag_recon": "distill-mag-recon",
        "if_recon": "distill-if-recon",
        "kl": "distill-kl",
    },
    upgrade=upgrade,
    group_kinds=(GROUP_KIND,),
)
