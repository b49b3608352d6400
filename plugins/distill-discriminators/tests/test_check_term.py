"""The test kit's conformance check on the ``adversarial`` term, each preset's setup at a small width: a finite
0-dim value, gradients reaching ``recon``, float64 gradcheck, bfloat16 autocast within 1e-2 of float32, and
torch.compile giving the eager value."""

from __future__ import annotations

import pytest
import torch
from distill_discriminators import (
    FORMS,
    AdversarialConfig,
    AdversarialLoss,
    SubOutput,
    discriminator_loss,
    feature_matching,
    generator_loss,
)

from distill_core.testing import check_term

# every preset's loss form, feature matching, reductions and input handling; fewer periods and scales, so the
# float64 gradcheck stays quick. The MRDs' FFTs are 512 and 256: at 128 the lowest band is 6 bins, and a bfloat16
# conv of a 2-wide input at stride 2 (kernel 9, padding 4) gives NaN at random on oneDNN CPUs with AMX (torch 2.13)
SETUPS = {
    "dac": [
        {"kind": "mpd", "options": {"periods": [2, 3], "always_pad": True, "normalize_input": True}},
        {"kind": "mrd", "options": {"fft_sizes": [512, 256], "padding": "dac", "normalize_input": True}},
    ],
    "hifigan_v1": [
        {"kind": "mpd", "options": {"periods": [2, 3]}},
        {"kind": "msd", "options": {"scales": 3, "spectral_first": True, "width": 0.125}},
    ],
    "encodec": [
        {
            "kind": "msstftd",
            "reduce": "mean",
            "feat_reduce": "mean",
            "options": {"filters": 32, "n_ffts": [256, 128], "hop_lengths": [64, 32], "win_lengths": [256, 128]},
        }
    ],
    "vocos": [
        {"kind": "mpd", "feat_reduce": "mean", "options": {"periods": [2], "first_layer_features": False}},
        {
            "kind": "mrd",
            "weight": 0.1,
            "reduce": "mean",
            "feat_reduce": "mean",
            "options": {
                "fft_sizes": [512, 256],
                "padding": "center",
                "normalize_input": True,
                "first_layer_features": False,
            },
        },
    ],
}


def waveforms(dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    target = torch.randn(2, 1, 1024, dtype=dtype, device=device)
    return {"recon": target + 0.3 * torch.randn_like(target), "target": target}


@pytest.mark.parametrize("preset", sorted(SETUPS))
def test_the_adversarial_term_passes_the_test_kit(preset):
    torch.manual_seed(0)
    check_term(
        AdversarialLoss, waveforms, AdversarialConfig(preset=preset, discriminators=SETUPS[preset], width=1 / 16)
    )


def test_losses_of_half_precision_outputs_are_reduced_in_float32():
    """Under autocast D's outputs are bfloat16; a bfloat16 mean keeps 3 digits, which made the encodec preset's
    total (its signed hinge gen loss nearly cancelled the feature loss) miss the kit's 1e-2 before this."""
    g = torch.Generator().manual_seed(0)

    def half() -> SubOutput:
        maps, logits = torch.randn(2, 4, 300, generator=g), torch.randn(2, 1, 300, generator=g)
        return SubOutput([maps.bfloat16()], logits.bfloat16())

    fake, real = [half()], [half()]
    wide = [SubOutput([f.float() for f in s.features], s.logits.float()) for s in fake]
    wide_real = [SubOutput([f.float() for f in s.features], s.logits.float()) for s in real]
    for form in FORMS:
        got = generator_loss(form, fake)
        assert got.dtype == torch.float32 and torch.equal(got, generator_loss(form, wide))
        got = discriminator_loss(form, real, fake)
        assert got.dtype == torch.float32 and torch.equal(got, discriminator_loss(form, wide_real, wide))
    got = feature_matching(real, fake, include_logits=True)
    assert got.dtype == torch.float32 and torch.equal(got, feature_matching(wide_real, wide, include_logits=True))
