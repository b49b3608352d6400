"""``recipe = "bigvgan_v2"``: the loss BigVGAN-v2 trains its 44.1 kHz vocoder with, as data.

Where each number comes from: NVIDIA/BigVGAN v2.4 (commit 7d2b454; bigvgan 2.4.1 on the registry ships the same
train.py, loss.py and discriminators.py), configs/bigvgan_v2_44khz_128band_512x.json and train.py.

- ``mel``, weight 15: config line 37 (``lambda_melloss: 15``) with line 36 (``use_multiscale_melloss: true``):
  train.py builds ``MultiScaleMelSpectrogramLoss(sampling_rate=h.sampling_rate)`` (its lines 98-100), whose
  defaults (loss.py lines 52-67) are DAC's: ``n_mels [5, 10, 20, 40, 80, 160, 320]``, ``window_lengths [32 ...
  2048]`` with hop ``w // 4``, ``clamp_eps 1e-5``, ``pow 1``, ``log_weight 1``, ``mag_weight 0``, fmin 0 and fmax
  None, a Hann window, librosa's Slaney filters, centred reflect-padded frames, log10 and L1. That is
  distill-mel's ``mel`` at these settings; the sample rate is config line 48 (``sampling_rate: 44100``).
- ``adversarial``, the ``bigvgan_v2`` preset of distill-discriminators: MPD (config line 32, ``mpd_reshapes [2,
  3, 5, 7, 11]``, line 33 no spectral norm) and MS-SB-CQTD (line 23 ``use_cqtd_instead_of_mrd``, lines 24-30);
  ``gen`` weight 1 and ``feat`` weight 2 (train.py adds ``loss_gen_s + loss_gen_f`` unscaled; loss.py's
  ``feature_loss`` returns ``loss * 2``), with the MPD's logits among the matched maps and the CQTD's not; D's
  AdamW, config lines 5-7 (lr 1e-4, betas [0.8, 0.99]; weight decay torch's default 0.01), ExponentialLR
  ``lr_decay`` 0.9999996 (line 8) stepped after every batch (train.py's ``scheduler_d.step()`` in the batch
  loop); D's gradient clipped at ``clip_grad_norm`` 500 (line 39), MPD's and CQTD's apart (train.py's two
  ``clip_grad_norm_`` calls in the D step).
- The total: train.py's ``loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel``.

Not part of the loss: the generator's own gradient clip (``clip_grad_norm_`` of its parameters at 500, the
trainer's) and ``--freeze_step`` (D not trained, G on the mel alone, for the first steps: the adversarial
term's ``update`` schedule, ``update = {start = N}``, is the same switch).

The batch: the generator's waveform ``recon`` and the target ``target``, ``[B, C, N]`` (mono, C = 1), at 44.1 kHz.
"""

from __future__ import annotations

from distill_core.registry.recipes import Recipe

from .dac import DAC

BIGVGAN_V2 = Recipe(
    terms={
        "mel": dict(DAC.terms["mel"]),  # the same loss, weight and rate as DAC's (the docstring's first item)
        "adversarial": {"weight": 1.0, "preset": "bigvgan_v2"},
    },
    batch={"recon": "B, C, N", "target": "B, C, N"},
    distributions={"mel": "distill-mel", "adversarial": "distill-discriminators"},
)
