"""BigVGAN 2.4.1's MS-SB-CQTD beside ours, for the tests that compare them (test_cqtd.py and
test_anchor_checkpoints.py here, distill-recipes' bigvgan_v2 recipe test, bench/bigvgan_steps.py): its config block
and the 44 kHz config's other lines the loss reads, the option names mapped to ours, weights that carry
a signal through every layer, and the anchor's parameters without its transforms' fixed buffers."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

# BigVGAN's configs (both v2 rates): cqtd_filters 128, max 1024, scale 1, dilations [1, 2, 4], hops
# [512, 256, 256], 9 octaves, 24 / 36 / 48 bins per octave
BIGVGAN_CQTD = {
    "cqtd_filters": 128,
    "cqtd_max_filters": 1024,
    "cqtd_filters_scale": 1,
    "cqtd_dilations": [1, 2, 4],
    "cqtd_hop_lengths": [512, 256, 256],
    "cqtd_n_octaves": [9, 9, 9],
    "cqtd_bins_per_octaves": [24, 36, 48],
}
# configs/bigvgan_v2_44khz_128band_512x.json, the lines the loss and D's step read (5-8, 23-39, 48)
BIGVGAN_V2_44K = {
    "learning_rate": 0.0001,
    "adam_b1": 0.8,
    "adam_b2": 0.99,
    "lr_decay": 0.9999996,
    "use_cqtd_instead_of_mrd": True,
    **BIGVGAN_CQTD,
    "mpd_reshapes": [2, 3, 5, 7, 11],
    "use_spectral_norm": False,
    "discriminator_channel_mult": 1,
    "use_multiscale_melloss": True,
    "lambda_melloss": 15,
    "clip_grad_norm": 500,
    "sampling_rate": 44100,
}
OURS = {  # BigVGAN's option -> ours
    "sampling_rate": "sample_rate",
    "cqtd_filters": "filters",
    "cqtd_max_filters": "max_filters",
    "cqtd_filters_scale": "filters_scale",
    "cqtd_dilations": "dilations",
    "cqtd_in_channels": "in_channels",
    "cqtd_out_channels": "out_channels",
    "cqtd_hop_lengths": "hop_lengths",
    "cqtd_n_octaves": "n_octaves",
    "cqtd_bins_per_octaves": "bins_per_octaves",
    "cqtd_normalize_volume": "normalize_input",
}


def options(cfg: dict[str, Any]) -> dict[str, Any]:
    """BigVGAN's cqtd_* settings as our kind's options."""
    return {OURS[k]: v for k, v in cfg.items()}


def signal_carrying(module: nn.Module, seed: int) -> None:
    """Random weights that carry the signal through every layer: unit-gain directions (weight norm's g near 1.5,
    plain convs scaled by their fan-in) and small biases. (disc_weights.randomise's biases near 0.5 and g near 0
    leave this stack's logits nearly constant: real and fake differed by 1e-5 of their size, so a comparison to
    1e-5 would have tested little.)"""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith("weight_g"):
                p.copy_(1.5 + 0.2 * r)
            elif name.endswith("bias"):
                p.copy_(0.1 * r)
            else:
                p.copy_(r * 1.5 / math.sqrt(p[0].numel()))


def weights(theirs: nn.Module) -> dict[str, torch.Tensor]:
    """The anchor's parameters, without its transforms' fixed buffers (CQT kernels, filters, resampling)."""
    return {k: v for k, v in theirs.state_dict().items() if ".cqt_transform." not in k and ".resample." not in k}


def ours_name(name: str) -> str:
    """An anchor CQTD parameter's name as ours: BigVGAN's per-octave ``conv_pres`` are our ``band_convs``."""
    return name.replace(".conv_pres.", ".band_convs.")
