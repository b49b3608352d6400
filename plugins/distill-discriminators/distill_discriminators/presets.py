"""The anchors' adversarial setups as data, each the field values of an AdversarialConfig.

Sources (read, not copied): DAC conf/base.yml and scripts/train.py (descript-audio-codec c7cfc5d); HiFi-GAN
config_v1.json, models.py and train.py (jik876/hifi-gan 4769534); audiocraft 1.3.0
config/solver/compression/default.yaml, adversarial/losses.py and solvers/builders.py; Vocos configs/vocos.yaml
and vocos/experiment.py (gemelo-ai/vocos c859e3b); BigVGAN v2.4 (NVIDIA/BigVGAN 7d2b454, bigvgan 2.4.1 on the
registry) configs/bigvgan_v2_44khz_128band_512x.json, train.py, loss.py and discriminators.py.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # MPD + MRD on DC-removed, peak-normalised audio; LSGAN; L1 feature matching summed, logits out;
    # lambdas adv/gen_loss 1, adv/feat_loss 2; AdamW(1e-4, (0.8, 0.99)), ExponentialLR(0.999996) per step, clip 10.
    "dac": {
        "discriminators": [
            {"kind": "mpd", "options": {"periods": [2, 3, 5, 7, 11], "always_pad": True, "normalize_input": True}},
            {"kind": "mrd", "options": {"fft_sizes": [2048, 1024, 512], "padding": "dac", "normalize_input": True}},
        ],
        "loss": "lsgan",
        "feature_matching": {"layers": "sum", "include_logits": False},
        "gen_weight": 1.0,
        "feat_weight": 2.0,
        "optimizer": {"name": "adamw", "lr": 1e-4, "betas": [0.8, 0.99], "weight_decay": 0.01},
        "scheduler": {"name": "exponential", "gamma": 0.999996, "interval": "step"},
        "grad_clip": 10.0,
    },
    # MPD + MSD (3 scales, spectral norm on the first); LSGAN; feature matching x2 with logits included;
    # AdamW(2e-4, (0.8, 0.99)), ExponentialLR(0.999) per epoch; no clip.
    "hifigan_v1": {
        "discriminators": [
            {"kind": "mpd", "options": {"periods": [2, 3, 5, 7, 11]}},
            {"kind": "msd", "options": {"scales": 3, "spectral_first": True}},
        ],
        "loss": "lsgan",
        "feature_matching": {"layers": "sum", "include_logits": True},
        "gen_weight": 1.0,
        "feat_weight": 2.0,
        "optimizer": {"name": "adamw", "lr": 2e-4, "betas": [0.8, 0.99], "weight_decay": 0.01},
        "scheduler": {"name": "exponential", "gamma": 0.999, "interval": "epoch"},
        "grad_clip": 0.0,
    },
    # MPD + MS-SB-CQTD at 44.1 kHz (the 44 kHz config's lines 23-34: filters 128 up to 1024, hops [512, 256, 256],
    # 9 octaves, 24/36/48 bins per octave; periods 2-11, no spectral norm); LSGAN (loss.py's least squares);
    # feature matching summed, x2 (loss.py's feature_loss), the MPD's logits matched, the CQTD's not (each
    # returns its fmap so); AdamW(1e-4, (0.8, 0.99)), config lines 5-7, torch's default weight decay;
    # ExponentialLR(0.9999996) every step (line 8; train.py steps it per batch since v2); D's gradient clipped
    # at 500 (line 39) for MPD and CQTD apart (train.py's two clip_grad_norm_ calls).
    "bigvgan_v2": {
        "discriminators": [
            {"kind": "mpd", "include_logits": True, "options": {"periods": [2, 3, 5, 7, 11]}},
            {
                "kind": "cqtd",
                "include_logits": False,
                "options": {
                    "sample_rate": 44100,
                    "filters": 128,
                    "max_filters": 1024,
                    "filters_scale": 1,
                    "dilations": [1, 2, 4],
                    "hop_lengths": [512, 256, 256],
                    "n_octaves": [9, 9, 9],
                    "bins_per_octaves": [24, 36, 48],
                },
            },
        ],
        "loss": "lsgan",
        "feature_matching": {"layers": "sum", "include_logits": False},
        "gen_weight": 1.0,
        "feat_weight": 2.0,
        "optimizer": {"name": "adamw", "lr": 1e-4, "betas": [0.8, 0.99], "weight_decay": 0.01},
        "scheduler": {"name": "exponential", "gamma": 0.9999996, "interval": "step"},
        "grad_clip": 500.0,
        "grad_clip_scope": "each",
    },
    # MS-STFTD (32 filters, 5 scales, LeakyReLU 0.3); hinge; feature matching averaged over layers and, as the
    # losses, over sub-discriminators; adv 4, feat 4 (EnCodec trains them through its gradient balancer);
    # Adam(3e-4, (0.5, 0.9)), no weight decay, no clip.
    "encodec": {
        "discriminators": [
            {
                "kind": "msstftd",
                "reduce": "mean",
                "feat_reduce": "mean",
                "options": {
                    "filters": 32,
                    "n_ffts": [1024, 2048, 512, 256, 128],
                    "hop_lengths": [256, 512, 128, 64, 32],
                    "win_lengths": [1024, 2048, 512, 256, 128],
                    "negative_slope": 0.3,
                },
            },
        ],
        "loss": "hinge",
        "feature_matching": {"layers": "mean", "include_logits": False},
        "gen_weight": 4.0,
        "feat_weight": 4.0,
        "optimizer": {"name": "adam", "lr": 3e-4, "betas": [0.5, 0.9], "weight_decay": 0.0},
        "grad_clip": 0.0,
    },
    # MPD (raw audio) + MRD (centred STFT of DC-removed, peak-normalised audio) x mrd_loss_coeff 0.1; the
    # clamped hinge; feature maps without each stack's first layer, with the logits; every adversarial loss and
    # feature-matching sum averaged over its discriminator's sub-discriminators (experiment.py divides loss_mp,
    # loss_mrd, loss_gen_mp, loss_gen_mrd and both FM sums by their counts); AdamW(5e-4, (0.8, 0.9)), cosine
    # over 1M D steps.
    "vocos": {
        "discriminators": [
            {
                "kind": "mpd",
                "reduce": "mean",
                "feat_reduce": "mean",
                "options": {"periods": [2, 3, 5, 7, 11], "first_layer_features": False},
            },
            {
                "kind": "mrd",
                "weight": 0.1,
                "reduce": "mean",
                "feat_reduce": "mean",
                "options": {
                    "fft_sizes": [2048, 1024, 512],
                    "padding": "center",
                    "normalize_input": True,
                    "first_layer_features": False,
                },
            },
        ],
        "loss": "hinge_clamped",
        "feature_matching": {"layers": "sum", "include_logits": True},
        "gen_weight": 1.0,
        "feat_weight": 1.0,
        "optimizer": {"name": "adamw", "lr": 5e-4, "betas": [0.8, 0.9], "weight_decay": 0.01},
        "scheduler": {"name": "cosine", "warmup_steps": 0, "total_steps": 1_000_000, "interval": "step"},
        "grad_clip": 0.0,
    },
}
