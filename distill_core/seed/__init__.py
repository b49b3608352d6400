"""The seed wing: everything that knows the seed's audio VAE (its terms stft, mag_recon, if_recon and kl, its
batch keys mu and logvar, its config dataclasses, loss functions, epochs and metrics fields).

The generic core below names none of it; ``distill_core.models`` and ``distill_core.training`` re-export
what the seed's code imports. Submodules load on their own: importing this package costs nothing.
"""
