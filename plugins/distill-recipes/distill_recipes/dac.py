"""``recipe = "dac"``: the loss Descript's DAC trains its codec with, as data.

Where each number comes from: descript-audio-codec 1.0.0 (tag ``1.0.0``, commit c7cfc5d). conf/base.yml and
scripts/train.py are not in the wheel; they were read from the repository at that tag (the wheel's dac/ files
are byte-equal to the tag's).

- ``mel``, weight 15: conf/base.yml line 42 (``lambdas: mel/loss: 15.0``); its settings, lines 63-69
  (``MelSpectrogramLoss.n_mels [5, 10, 20, 40, 80, 160, 320]``, ``window_lengths [32 ... 2048]``, ``mel_fmin``
  0, ``mel_fmax`` null, ``pow 1.0``, ``clamp_eps 1e-5``, ``mag_weight 0.0``; ``log_weight`` is
  dac/nn/loss.py's default 1.0); the sample rate, line 2 (``DAC.sample_rate: 44100``).
- ``adversarial``, the ``dac`` preset of distill-discriminators: its ``gen`` weight 1 and ``feat`` weight 2 are
  conf/base.yml lines 44 and 43 (``adv/gen_loss: 1.0``, ``adv/feat_loss: 2.0``); the discriminator, lines 15-24
  (``periods [2, 3, 5, 7, 11]``, ``fft_sizes [2048, 1024, 512]``, five bands); D's AdamW, lines 27-29 (lr 1e-4,
  betas [0.8, 0.99]; weight decay torch's default 0.01) and ExponentialLR gamma 0.999996 per step
  (scripts/train.py line 253); D's gradient clip 10, scripts/train.py lines 249-251.
- ``commitment``, weight 0.25, and ``codebook``, weight 1.0: conf/base.yml lines 45-46
  (``vq/commitment_loss: 0.25``, ``vq/codebook_loss: 1.0``); summed over stages as dac/nn/quantize.py's
  ``ResidualVectorQuantize.forward`` does (distill-quantizer's default ``stage_reduction = "sum"``).
- The total: scripts/train.py line 265, ``sum(v * output[k] for k, v in lambdas.items() if k in output)``.
  ``stft/loss`` and ``waveform/loss`` (lines 256, 258) are computed for logging but have no lambda, so they
  add nothing and are not terms here.

The batch: the decoder's waveform ``recon`` and the input ``target``, ``[B, C, N]`` (DAC is mono: C = 1);
``z_e`` and ``z_q``, each stage's projected latents and codebook vectors as ``VectorQuantize.forward`` compares
them, stacked ``[B, Q, D, T]`` (conf/base.yml lines 9-11: Q = 9 stages of D = 8). DAC trains with quantizer
dropout (line 12, ``quantizer_dropout: 1.0``): multiply both by the stage mask (distill-quantizer's README).
"""

from __future__ import annotations

from distill_core.registry.recipes import Recipe

DAC = Recipe(
    terms={
        "mel": {
            "weight": 15.0,
            "n_mels": [5, 10, 20, 40, 80, 160, 320],
            "window_lengths": [32, 64, 128, 256, 512, 1024, 2048],
            "clamp_eps": 1e-5,
            "pow": 1.0,
            "log_weight": 1.0,
            "mag_weight": 0.0,
            "sample_rate": 44100,
        },
        "adversarial": {"weight": 1.0, "preset": "dac"},
        "commitment": {"weight": 0.25, "stage_reduction": "sum"},
        "codebook": {"weight": 1.0, "stage_reduction": "sum"},
    },
    batch={"recon": "B, C, N", "target": "B, C, N", "z_e": "B, Q, D, T", "z_q": "B, Q, D, T"},
    distributions={
        "mel": "distill-mel",
        "adversarial": "distill-discriminators",
        "commitment": "distill-quantizer",
        "codebook": "distill-quantizer",
    },
)
