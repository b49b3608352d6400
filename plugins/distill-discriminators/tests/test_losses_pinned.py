"""The loss functions' public defaults and their float32 reduction of half-precision logits, which `make mutate`
found unpinned (issue 36): the Adversarial always passes its settings, so only direct callers see them."""

from __future__ import annotations

import pytest
import torch
from distill_discriminators import discriminator_loss, feature_matching, generator_loss
from distill_discriminators.base import SubOutput


def outputs(seed: int, dtype: torch.dtype = torch.float32) -> list[SubOutput]:
    g = torch.Generator().manual_seed(seed)
    return [
        SubOutput(
            [torch.randn(2, 4, 8, generator=g).to(dtype) for _ in range(3)], torch.randn(2, 1, 8, generator=g).to(dtype)
        )
        for _ in range(2)
    ]


def test_the_defaults_sum_over_sub_discriminators_and_layers_without_the_logits():
    real, fake = outputs(0), outputs(1)
    assert torch.equal(generator_loss("lsgan", fake), sum((1 - f.logits).pow(2).mean() for f in fake))
    assert torch.equal(
        discriminator_loss("lsgan", real, fake),
        sum((1 - r.logits).pow(2).mean() + f.logits.pow(2).mean() for r, f in zip(real, fake)),
    )
    expected = sum(
        sum(torch.nn.functional.l1_loss(fm, rm) for rm, fm in zip(r.features, f.features)) for r, f in zip(real, fake)
    )
    assert torch.allclose(feature_matching(real, fake), expected, rtol=1e-6, atol=0)
    with_logits = feature_matching(real, fake, include_logits=True)
    assert with_logits > feature_matching(real, fake)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_are_reduced_in_float32(dtype):
    """A half-precision mean keeps about 3 significant digits; each loss upcasts first, so it equals the loss of
    the same (rounded) values in float32, and is float32."""
    real, fake = outputs(2, dtype), outputs(3, dtype)
    real32 = [SubOutput([t.float() for t in o.features], o.logits.float()) for o in real]
    fake32 = [SubOutput([t.float() for t in o.features], o.logits.float()) for o in fake]
    for got, want in (
        (generator_loss("hinge", fake), generator_loss("hinge", fake32)),
        (discriminator_loss("lsgan", real, fake), discriminator_loss("lsgan", real32, fake32)),
        (feature_matching(real, fake, layers="mean"), feature_matching(real32, fake32, layers="mean")),
    ):
        assert got.dtype == torch.float32
        assert torch.allclose(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("how", ["SUM", "avg", None])
def test_a_reduction_other_than_sum_or_mean_is_refused(how):
    real, fake = outputs(4), outputs(5)
    for call in (
        lambda: generator_loss("lsgan", fake, how),
        lambda: discriminator_loss("lsgan", real, fake, how),
        lambda: feature_matching(real, fake, how=how),
        lambda: feature_matching(real, fake, layers=how),
    ):
        with pytest.raises(ValueError, match=f"expected a reduction 'sum' or 'mean', got {how!r}"):
            call()
