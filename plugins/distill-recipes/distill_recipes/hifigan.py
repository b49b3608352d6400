"""``recipe = "hifigan_v1"``: the loss HiFi-GAN V1 trains its generator with, as data.

Where each number comes from: jik876/hifi-gan at commit 4769534 (the repository; HiFi-GAN is not on a package
registry), config_v1.json, train.py and models.py.

- ``hifigan_mel``, weight 45: train.py line 145 (``loss_mel = F.l1_loss(y_mel, y_g_hat_mel) * 45``); its
  settings, config_v1.json lines 18-28 (``num_mels 80``, ``n_fft 1024``, ``hop_size 256``, ``win_size 1024``,
  ``sampling_rate 22050``, ``fmin 0``, ``fmax_for_loss null``: the loss's mel, train.py line 124, uses
  ``fmax_for_loss``, not the input features' ``fmax 8000``); the mel itself, meldataset.py lines 49-72.
- ``adversarial``, the ``hifigan_v1`` preset of distill-discriminators: MPD (models.py lines 164-172, periods 2,
  3, 5, 7, 11) and MSD (``MultiScaleDiscriminator``, line 219: three scales, spectral norm on the first); the
  least-squares losses, models.py lines 260-283; ``gen`` weight 1 (train.py line 153 adds ``loss_gen_s +
  loss_gen_f`` unscaled) and ``feat`` weight 2 (models.py line 257, ``return loss*2`` in ``feature_loss``); D's
  AdamW, train.py lines 64-65 with config_v1.json lines 5-7 (lr 2e-4, betas [0.8, 0.99]; weight decay torch's
  default 0.01), ExponentialLR 0.999 per epoch, train.py lines 72 and 221 (``lr_decay``, config_v1.json line 8).
- The total: train.py line 153, ``loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel``.

The batch: the generator's waveform ``recon`` and the target waveform ``target``, ``[B, C, N]`` (mono, C = 1).
"""

from __future__ import annotations

from distill_core.registry.recipes import Recipe

HIFIGAN_V1 = Recipe(
    terms={
        "hifigan_mel": {
            "weight": 45.0,
            "sampling_rate": 22050,
            "n_fft": 1024,
            "num_mels": 80,
            "hop_size": 256,
            "win_size": 1024,
            "fmin": 0.0,
        },
        "adversarial": {"weight": 1.0, "preset": "hifigan_v1"},
    },
    batch={"recon": "B, C, N", "target": "B, C, N"},
    distributions={"hifigan_mel": "distill-recipes", "adversarial": "distill-discriminators"},
)
