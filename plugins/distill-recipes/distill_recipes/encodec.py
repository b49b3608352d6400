"""``recipe = "encodec"``: the loss audiocraft's compression solver trains EnCodec with, as data.

Where each number comes from: audiocraft 1.3.0 (tag ``v1.3.0``, commit 72cb16f; the wheel's files are byte-equal
to the tag's), config/solver/compression/default.yaml, solvers/compression.py, losses/balancer.py and
quantization/.

- The gradient balancer, on: default.yaml lines 20-24 (``balance_grads: true``, ``ema_decay: 0.999``,
  ``per_batch_item: true``, ``total_norm: 1.``); ``epsilon`` 1e-12, losses/balancer.py line 62 (the
  ``Balancer`` default). Its input is the decoder's waveform ``recon`` (solvers/compression.py line 140,
  ``self.balancer.backward(balanced_losses, y_pred)``). Every term that reads ``recon`` is balanced: the
  weights below are shares of the gradient at ``recon``, not multipliers.
- ``adversarial``, the ``encodec`` preset of distill-discriminators, ``gen`` and ``feat`` weights 4 and 4:
  default.yaml lines 14-15 (``adv: 4.``, ``feat: 4.``); MS-STFTD, lines 71-80; hinge losses and L1 feature
  matching, lines 26-30; D's Adam, lines 147-155 (lr 3e-4, betas [0.5, 0.9], no weight decay, no clip).
- ``wave_l1``, weight 0.1: default.yaml line 16 (``l1: 0.1``, ``torch.nn.L1Loss``, solvers/builders.py
  line 186).
- ``audiocraft_msspec``, weight 2: default.yaml line 18 (``msspec: 2.``); its settings, lines 52-61, and the
  sample rate of encodec_base_24khz.yaml line 10 (24000). ``mel: 0.`` and ``sisnr: 0.`` (lines 17, 19) are
  computed for information only (solvers/compression.py lines 47-50, 157-162): not terms here.
- ``commitment``, weight 1, outside the balancer: quantization/core_vq.py line 256 (``commitment_weight: float
  = 1.``; quantization/vq.py's ``ResidualVectorQuantizer`` passes none), the stages' mean as the ``penalty``
  (vq.py line 85), backpropagated on its own with its plain weight (solvers/compression.py lines 107-108 and
  128-132). It reads ``z_e`` and ``z_q``, not ``recon``, so the balancer leaves it alone.

The batch: ``recon`` and ``target``, ``[B, C, N]``; ``z_e`` and ``z_q``, each stage's codebook input (after
``project_in``) and the code vectors it was given, stacked ``[B, Q, D, T]`` (audiocraft keeps them ``[B, T, D]``:
transpose). With ``q_dropout``, pass the stages that ran.

The core's ``Recipe`` has no balancer field yet, so this recipe sets ``[balancer]`` through its ``upgrade``: a
file that names ``recipe = "encodec"`` reads as if it began with the balancer above, its own ``[balancer]``
keys over it. (When ``Recipe`` gains a ``balancer`` mapping merged under the file's, it moves there.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distill_core.registry.recipes import Recipe, Upgrade

NAME = "encodec"
BALANCER: dict[str, Any] = {
    "enabled": True,
    "input": "recon",
    "total_norm": 1.0,
    "ema_decay": 0.999,
    "per_batch_item": True,
    "epsilon": 1e-12,
}


def with_balancer(data: Mapping[str, Any]) -> Upgrade | None:
    """A file naming this recipe with the recipe's ``[balancer]`` under its own; None for any other file."""
    if data.get("recipe") != NAME:
        return None
    given = data.get("balancer", {})
    if not isinstance(given, Mapping):
        return None  # not a table: the core's own check names it
    return Upgrade({**data, "balancer": {**BALANCER, **given}})


ENCODEC = Recipe(
    terms={
        "adversarial": {"weight": 1.0, "preset": "encodec"},
        "wave_l1": {"weight": 0.1},
        "audiocraft_msspec": {
            "weight": 2.0,
            "sample_rate": 24000,
            "range_start": 6,
            "range_end": 11,
            "n_mels": 64,
            "f_min": 64.0,
            "normalized": True,
            "alphas": False,
            "floor_level": 1e-5,
        },
        "commitment": {"weight": 1.0, "stage_reduction": "mean"},
    },
    batch={"recon": "B, C, N", "target": "B, C, N", "z_e": "B, Q, D, T", "z_q": "B, Q, D, T"},
    distributions={
        "adversarial": "distill-discriminators",
        "wave_l1": "distill-wave-l1",
        "audiocraft_msspec": "distill-mel",
        "commitment": "distill-quantizer",
    },
    upgrade=with_balancer,
)
