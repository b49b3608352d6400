"""HiFi-GAN's MSD parity through golden tensors that HiFi-GAN's own code made (make_msd_golden.py says how):
the same weights and inputs give the same logits, feature maps, D loss, D step and generator losses, to 1e-5."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from disc_weights import assert_close, load_state
from distill_discriminators import Adversarial, AdversarialConfig

GOLDEN = Path(__file__).resolve().parent / "data" / "hifigan_msd.pt"


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(GOLDEN, weights_only=True)


def ours_from(golden: dict) -> Adversarial:
    """The hifigan_v1 preset's MSD alone (lr and betas as config_v1.json), holding the golden weights."""
    config = AdversarialConfig(preset="hifigan_v1", discriminators=[{"kind": "msd"}], width=golden["width"])
    assert list(config.optimizer.betas) == golden["optimizer"]["betas"]
    assert config.optimizer.lr == golden["optimizer"]["lr"]
    adv = Adversarial(config)
    weights = {name: codes.float() * 2.0**exponent for name, (codes, exponent) in golden["codes"].items()}
    load_state(adv.discriminators[0], {**weights, **golden["vectors"]})
    return adv


def test_msd_logits_and_feature_maps_equal_hifigans(golden):
    """Train mode, real then fake, as HiFi-GAN's msd(y, y_hat): each forward runs one power iteration."""
    adv, step = ours_from(golden), golden["d_step"]
    with torch.no_grad():
        real, fake = adv.judge(golden["real"])[0], adv.judge(golden["fake"])[0]
    for side, subs in (("real", real), ("fake", fake)):
        for i, sub in enumerate(subs):
            maps = step[f"{side}_maps"][i]  # HiFi-GAN's fmap ends with the logits before flattening
            assert len(sub.features) == len(maps) - 1
            for j, (a, b) in enumerate(zip(sub.features, maps)):
                assert_close(a, b, f"{side} scale {i} feature map {j}")
            assert_close(sub.logits, maps[-1], f"{side} scale {i} logits")
            assert_close(sub.logits.flatten(1), step[f"{side}_logits"][i], f"{side} scale {i} flat logits")


def test_a_d_step_equals_hifigans(golden):
    """update(): the D loss, then AdamW's step: spectral norm's vectors after it, and the generator's losses
    (read-only pass) on the stepped weights, against HiFi-GAN's with its MSD in eval mode."""
    adv, after = ours_from(golden), golden["after_step"]
    fake, real = golden["fake"], golden["real"]
    assert_close(adv.update(fake, real)["disc_loss"], golden["d_step"]["loss"], "D loss")
    vectors = {k: v for k, v in adv.discriminators[0].state_dict().items() if k in after["vectors"]}
    assert set(vectors) == set(after["vectors"]) and vectors
    for name, value in vectors.items():
        assert_close(value, after["vectors"][name], f"{name} after the step")
    out = adv(fake, real)
    assert_close(out["gen"], after["gen_loss"], "generator loss after the step")
    assert_close(adv.config.feat_weight * out["feat"], after["feat_loss"], "feature loss (x2) after the step")
    with torch.no_grad(), adv.power_iteration_off():
        for i, sub in enumerate(adv.judge(fake)[0]):
            assert_close(sub.logits.flatten(1), after["fake_logits"][i], f"fake scale {i} logits after the step")


def test_the_generator_pass_leaves_spectral_norm_as_it_is(golden):
    """HiFi-GAN's generator pass runs two more power iterations (train_mode_* in the goldens, which differ);
    ours leaves the vectors alone, so calling it twice gives one value."""
    adv = ours_from(golden)
    adv.update(golden["fake"], golden["real"])
    before = {k: v.clone() for k, v in adv.state_dict().items() if k.endswith(("weight_u", "weight_v"))}
    first, second = adv(golden["fake"], golden["real"]), adv(golden["fake"], golden["real"])
    assert all(torch.equal(v, adv.state_dict()[k]) for k, v in before.items()) and before
    assert torch.equal(first["gen"], second["gen"]) and torch.equal(first["feat"], second["feat"])
    after = golden["after_step"]
    assert not torch.allclose(after["train_mode_feat_loss"], after["feat_loss"], rtol=1e-3)
