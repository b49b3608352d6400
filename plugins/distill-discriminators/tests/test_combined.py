"""The adversarial term inside a CombinedLoss, as a training loop drives it: D's step through loss.update, gen and
feat as components with the preset's weights, the whole loss state resuming bit-exact, no host sync, a non-finite
D loss skipped on the device, and option problems reported when the config loads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill_core import CombinedLoss, ConfigError, load_config

SMALL = [
    {"kind": "mpd", "options": {"periods": [2, 3], "always_pad": True, "normalize_input": True}},
    {"kind": "mrd", "options": {"fft_sizes": [128, 64], "normalize_input": True}},
]


def config(preset="dac", update=None, **section):
    term = {"preset": preset, "discriminators": SMALL, "width": 1 / 16, **section}
    if update is not None:
        term["update"] = update
    return load_config({"recipe": "none", "terms": {"adversarial": term, "wave_l1": {}}})


def waves(seed, b=2, n=1024):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, n, generator=g), torch.randn(b, 1, n, generator=g)


def d_params(loss):
    return [p.detach().clone() for p in loss.terms["adversarial"].adversarial.discriminators.parameters()]


@pytest.mark.parametrize(
    "preset, gen, feat",
    [("dac", 1.0, 2.0), ("hifigan_v1", 1.0, 2.0), ("bigvgan_v2", 1.0, 2.0), ("encodec", 4.0, 4.0), ("vocos", 1.0, 1.0)],
)
def test_gen_and_feat_are_components_with_the_presets_weights(preset, gen, feat):
    torch.manual_seed(0)
    loss = CombinedLoss(
        config(
            preset,
            discriminators=SMALL
            if preset != "encodec"
            else [
                {
                    "kind": "msstftd",
                    "options": {"filters": 8, "n_ffts": [128], "hop_lengths": [32], "win_lengths": [128]},
                }
            ],
        )
    )
    assert loss.weights() == {"adversarial": 1.0, "wave_l1": 1.0, "adversarial_gen": gen, "adversarial_feat": feat}
    fake, real = waves(0)
    out = loss({"recon": fake, "target": real})
    g, f = loss.terms["adversarial"].adversarial(fake, real).values()  # one D forward gives both
    assert torch.equal(out["adversarial_gen_loss"], g) and torch.equal(out["adversarial_feat_loss"], f)
    assert torch.allclose(out["adversarial_loss"], gen * g + feat * f)
    assert torch.allclose(out["total_loss"], gen * g + feat * f + out["wave_l1_loss"])


def test_an_outputs_table_overrides_the_preset_and_unknown_outputs_are_named():
    loss = CombinedLoss(config(outputs={"feat": {"schedule": "linear_warmup", "max": 10.0}}))
    assert loss.weights(0, 10)["adversarial_feat"] == 0.0 and loss.weights(0, 10)["adversarial_gen"] == 1.0
    with pytest.raises(ConfigError) as e:
        config(outputs={"disc": 1.0})
    assert dict(e.value.problems)["terms.adversarial.outputs.disc"] == (
        "'adversarial' has no output 'disc'; its outputs: gen, feat"
    )


def test_update_runs_d_step_and_its_figures_never_collide_with_outputs():
    torch.manual_seed(0)
    loss = CombinedLoss(config())
    fake, real = waves(0)
    gen = nn.Parameter(torch.ones(()))
    before = d_params(loss)
    figures = loss.update({"recon": fake * gen, "target": real})
    assert set(figures) == {"adversarial_disc_loss", "adversarial_real_score", "adversarial_fake_score"}
    assert gen.grad is None and any(not torch.equal(a, b) for a, b in zip(before, d_params(loss)))
    out = loss({"recon": fake * gen, "target": real})
    assert set(figures).isdisjoint(out)
    loss.eval()
    held = d_params(loss)
    assert loss.update({"recon": fake, "target": real}) == {}
    assert all(torch.equal(a, b) for a, b in zip(held, d_params(loss)))


def test_a_zero_weight_warm_up_still_trains_d():
    torch.manual_seed(0)
    loss = CombinedLoss(config(weight={"schedule": "linear_warmup", "max": 1.0, "warmup_fraction": 0.5}))
    fake, real = waves(0)
    before = d_params(loss)
    loss.update({"recon": fake, "target": real})
    out = loss({"recon": fake, "target": real}, epoch=0, total_epochs=10)
    assert torch.equal(out["total_loss"], out["wave_l1_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, d_params(loss)))


def build(update):
    torch.manual_seed(0)
    generator = nn.Conv1d(1, 1, 5, padding=2)
    loss = CombinedLoss(config(update=update))
    return generator, torch.optim.Adam(generator.parameters(), lr=1e-3), loss


def train(generator, optimizer, loss, steps, first=0):
    for step in range(first, first + steps):
        noise, real = waves(step)
        fake = generator(noise)
        batch = {"recon": fake, "target": real}
        loss.update(batch)
        out = loss(batch)
        optimizer.zero_grad()
        loss.backward(out)
        optimizer.step()


def test_three_steps_saved_and_loaded_then_three_more_equal_six_straight(tmp_path):
    update = {"probability": 0.7, "seed": 3}  # the schedule's draws resume too
    straight = build(update)
    train(*straight, 6)
    first = build(update)
    train(*first, 3)
    generator, optimizer, loss = first
    torch.save(
        {"model": generator.state_dict(), "optimizer": optimizer.state_dict(), "loss": loss.state_dict()},
        tmp_path / "last.pt",
    )
    resumed = build(update)
    torch.manual_seed(123)  # whatever the process did in between
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    resumed[0].load_state_dict(saved["model"])
    resumed[1].load_state_dict(saved["optimizer"])
    resumed[2].load_state_dict(saved["loss"])
    train(*resumed, 3, first=3)
    want, got = straight[2].state_dict(), resumed[2].state_dict()
    assert want.keys() == got.keys()
    for key in want:
        if isinstance(want[key], torch.Tensor):
            assert torch.equal(want[key], got[key]), key
    for a, b in zip(straight[0].parameters(), resumed[0].parameters()):
        assert torch.equal(a, b)
    adv = straight[2].terms["adversarial"].adversarial
    assert 0 < int(adv.updates) < 6  # some draws skipped D's step: the resumed run skipped the same ones
    assert int(adv.updates) == int(resumed[2].terms["adversarial"].adversarial.updates)
    assert straight[2].update_clock.calls == resumed[2].update_clock.calls == 6


def test_no_host_sync_over_update_forward_and_backward(sync_counter):
    generator, _, loss = build({"every": 2, "probability": 0.5})  # the generator's own optimizer is not the loss's
    for step in range(3):
        noise, real = waves(step)
        batch = {"recon": generator(noise), "target": real}
        loss.update(batch)
        loss.backward(loss(batch))
    assert sum(sync_counter.values()) == 0, sync_counter
    assert loss.terms["adversarial"].adversarial.updates.item() > 0  # D's step ran (and this read synced once)


def test_a_non_finite_d_loss_skips_d_on_the_device_through_the_loss():
    torch.manual_seed(0)
    loss = CombinedLoss(config())
    fake, real = waves(0)
    fake[0, 0, 7] = float("nan")
    before = d_params(loss)
    figures = loss.update({"recon": fake, "target": real})
    assert not torch.isfinite(figures["adversarial_disc_loss"])
    assert all(torch.equal(a, b) for a, b in zip(before, d_params(loss)))
    adv = loss.terms["adversarial"].adversarial
    assert int(adv.skipped) == 1 and int(adv.updates) == 0


def test_a_width_the_discriminators_cannot_take_is_reported_when_the_config_loads():
    with pytest.raises(ConfigError) as e:
        load_config({"recipe": "none", "terms": {"adversarial": {"preset": "hifigan_v1", "width": 1 / 16}}})
    message = str(e.value)
    assert "terms.adversarial.width: width 0.0625 gives conv" in message and "use a multiple of 1/8" in message
    assert "discriminators[1], kind 'msd'" in message and "sub-exception" not in message


def test_gen_and_feat_are_balanced_on_their_own():
    """EnCodec trains adv 4 and feat 4 through its balancer: each output gets its share of the gradient at recon."""
    torch.manual_seed(0)
    section = {
        "preset": "encodec",
        "width": 1 / 4,
        "discriminators": [
            {
                "kind": "msstftd",
                "reduce": "mean",
                "feat_reduce": "mean",
                "options": {"filters": 8, "n_ffts": [128], "hop_lengths": [32], "win_lengths": [128]},
            }
        ],
    }
    loss = CombinedLoss(
        load_config(
            {
                "recipe": "none",
                "balancer": {"enabled": True},
                "terms": {"adversarial": section, "wave_l1": {"weight": 2.0}},
            }
        )
    )
    assert loss.balancer.terms == ["adversarial_gen", "adversarial_feat", "wave_l1"]
    noise, real = waves(0)
    fake = noise.requires_grad_(True)
    logs = loss.backward(loss({"recon": fake, "target": real}))
    ratios = torch.stack([logs[f"ratio_{c}"] for c in loss.balancer.terms])
    # first step: each norm is its own average, so the shares are the weights' (4, 4, 2) / 10
    assert torch.allclose(ratios, torch.tensor([0.4, 0.4, 0.2]), atol=1e-5)
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
