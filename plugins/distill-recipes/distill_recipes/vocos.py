"""``recipe = "vocos"``: the loss Vocos trains its vocoder with, as data.

Where each number comes from: vocos 0.1.0 (tag ``v0.1.0``, commit 11b4628; the wheel's vocos/ files are
byte-equal to the tag's). configs/vocos.yaml is not in the wheel; it was read from the repository at that tag.

- ``vocos_mel``, weight 45: configs/vocos.yaml line 26 (``mel_loss_coeff: 45``); the loss, vocos/loss.py lines
  10-37 (``MelSpecReconstructionLoss``: n_fft 1024, hop_length 256, n_mels 100, its defaults, which the
  experiment keeps, vocos/experiment.py line 65) at configs/vocos.yaml line 24 (``sample_rate: 24000``).
- ``adversarial``, the ``vocos`` preset of distill-discriminators: MPD and MRD (experiment.py lines 59-60, their
  defaults), MRD's losses scaled by ``mrd_loss_coeff`` 0.1 (configs/vocos.yaml line 27); each discriminator's
  losses and feature matching divided by its number of sub-discriminators (experiment.py lines 119-121 for D,
  140-143 for the generator); ``gen`` and ``feat`` weights 1 (the sum at lines 153-159 adds them unscaled);
  D's AdamW, experiment.py line 81 (lr 5e-4 from configs/vocos.yaml line 25, betas (0.8, 0.9), weight decay
  torch's default 0.01); the cosine schedule without warm-up over 1M D steps, experiment.py lines 84-87 with
  configs/vocos.yaml lines 28 and 81 (``max_steps: 2000000``, halved per optimizer).
- GAN from the first step: configs/vocos.yaml line 29 (``pretrain_mel_steps: 0``).
- The total: experiment.py lines 153-159.

The batch: the head's waveform ``recon`` and the input ``target``, ``[B, C, N]`` (Vocos is mono, ``[B, N]``:
``unsqueeze(1)``).
"""

from __future__ import annotations

from distill_core.registry.recipes import Recipe

VOCOS = Recipe(
    terms={
        "vocos_mel": {"weight": 45.0, "sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100},
        "adversarial": {"weight": 1.0, "preset": "vocos"},
    },
    batch={"recon": "B, C, N", "target": "B, C, N"},
    distributions={"vocos_mel": "distill-recipes", "adversarial": "distill-discriminators"},
)
