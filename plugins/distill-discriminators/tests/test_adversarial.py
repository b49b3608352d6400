"""Adversarial in a plain PyTorch loop: D's step changes only D, the generator's pass leaves D read-only, no host
sync, a non-finite D loss skips on the device, state round-trips bit-exact, a mismatched state is refused."""

from __future__ import annotations

import math

import pytest
import torch
from distill_discriminators import Adversarial, AdversarialConfig, AdversarialLoss, StateMismatch
from torch import nn

SMALL = [
    {"kind": "mpd", "options": {"periods": [2, 3], "always_pad": True, "normalize_input": True}},
    {"kind": "mrd", "options": {"fft_sizes": [128, 64], "normalize_input": True}},
]


def small(preset="dac", **overrides):
    return AdversarialConfig(
        preset=preset, discriminators=overrides.pop("discriminators", SMALL), width=1 / 16, **overrides
    )


def waves(b=2, n=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, n, generator=g), torch.randn(b, 1, n, generator=g)


def d_params(adv):
    return [p.detach().clone() for p in adv.discriminators.parameters()]


def test_update_changes_only_d_and_returns_device_scalars():
    torch.manual_seed(0)
    adv, gen = Adversarial(small()), nn.Conv1d(1, 1, 3, padding=1)
    noise, real = waves()
    fake = gen(noise)
    before = d_params(adv)
    out = adv.update(fake, real)
    assert set(out) == {"disc_loss", "real_score", "fake_score"} and all(v.dim() == 0 for v in out.values())
    assert all(p.grad is None for p in gen.parameters())  # D's step saw fake.detach()
    assert any(not torch.equal(a, b) for a, b in zip(before, d_params(adv)))
    assert int(adv.updates) == 1 and int(adv.skipped) == 0
    assert not any(p.requires_grad for p in adv.discriminators.parameters())  # read-only again


def test_generator_pass_makes_no_d_gradients_and_gen_feat_share_one_forward():
    torch.manual_seed(0)
    adv, gen = Adversarial(small()), nn.Conv1d(1, 1, 3, padding=1)
    noise, real = waves()
    calls = []
    for d in adv.discriminators:
        d.register_forward_hook(lambda m, i, o: calls.append(i[0].requires_grad))
    out = adv(gen(noise), real)
    assert set(out) == {"gen", "feat"}
    (2 * out["gen"] + out["feat"]).backward()
    assert calls == [False, False, True, True]  # per kind: real under no_grad, then fake, once each
    assert all(p.grad is None for p in adv.discriminators.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gen.parameters())


def test_no_host_sync_in_the_d_step_or_the_g_step(sync_counter):
    torch.manual_seed(0)
    adv, gen = Adversarial(small()), nn.Conv1d(1, 1, 3, padding=1)
    noise, real = waves()
    fake = gen(noise)
    adv.update(fake, real)
    adv.generator_loss(fake, real).backward()
    assert sum(sync_counter.values()) == 0, sync_counter


def test_a_non_finite_d_loss_skips_the_update_on_the_device():
    torch.manual_seed(0)
    adv = Adversarial(small())
    fake, real = waves()
    fake[0, 0, 5] = float("nan")
    before = d_params(adv)
    state_before = {k: v for k, v in adv.optimizer.state_dict()["state"].items()}
    out = adv.update(fake, real)
    assert not torch.isfinite(out["disc_loss"])
    assert all(torch.equal(a, b) for a, b in zip(before, d_params(adv)))
    assert int(adv.updates) == 0 and int(adv.skipped) == 1
    assert all(torch.isfinite(p).all() for p in adv.discriminators.parameters())
    assert not state_before  # nothing was there, and a later good step still trains
    adv.update(*waves(seed=1))
    assert int(adv.updates) == 1 and any(not torch.equal(a, b) for a, b in zip(before, d_params(adv)))


def train(adv, gen, opt, steps, seed0=0):
    """The loop a user writes today: D's step, then the generator's loss and step."""
    for s in range(steps):
        noise, real = waves(seed=seed0 + s)
        fake = gen(noise)
        adv.update(fake, real)
        opt.zero_grad()
        loss = adv.generator_loss(fake, real) + (fake - real).abs().mean()
        loss.backward()
        opt.step()


def test_a_plain_pytorch_loop_resumes_bit_exact(tmp_path):
    def build():
        torch.manual_seed(0)
        gen = nn.Conv1d(1, 1, 3, padding=1)
        return Adversarial(small()), gen, torch.optim.Adam(gen.parameters(), lr=1e-3)

    adv, gen, opt = build()
    train(adv, gen, opt, 3)

    adv2, gen2, opt2 = build()
    train(adv2, gen2, opt2, 2)
    torch.save(
        {"adversarial": adv2.state_dict(), "gen": gen2.state_dict(), "opt": opt2.state_dict()}, tmp_path / "ck.pt"
    )
    adv3, gen3, opt3 = build()
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    adv3.load_state_dict(ck["adversarial"])
    gen3.load_state_dict(ck["gen"])
    opt3.load_state_dict(ck["opt"])
    assert int(adv3.updates) == 2 and adv3.scheduler.last_epoch == 2
    train(adv3, gen3, opt3, 1, seed0=2)
    for a, b in zip(adv.state_dict().values(), adv3.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(gen.parameters(), gen3.parameters()))
    assert adv.optimizer.state_dict()["state"][0]["exp_avg"].equal(adv3.optimizer.state_dict()["state"][0]["exp_avg"])


def test_a_mismatched_state_is_refused_in_one_line():
    adv = Adversarial(small())
    other = Adversarial(small(discriminators=[dict(SMALL[0], options={"periods": [2, 5]}), SMALL[1]]))
    with pytest.raises(StateMismatch) as e:
        other.load_state_dict(adv.state_dict())
    message = str(e.value)
    assert "\n" not in message and "discriminators[0].options.periods: [2, 3] -> [2, 5]" in message
    # the same architecture with another loss form and lr loads: those do not change what D's weights mean
    Adversarial(small(loss="hinge", optimizer={"lr": 1e-3})).load_state_dict(adv.state_dict())


def test_init_weights_only_and_resume_from_a_checkpoint_file(tmp_path):
    torch.manual_seed(0)
    adv, gen = Adversarial(small()), nn.Conv1d(1, 1, 3, padding=1)
    train(adv, gen, torch.optim.Adam(gen.parameters()), 2)
    torch.save(
        {"epoch": 3, "loss": {"terms.adversarial.adversarial." + k: v for k, v in adv.state_dict().items()}},
        tmp_path / "last.pt",
    )
    torch.manual_seed(1)
    warm = Adversarial(small(init="weights_only", init_from=str(tmp_path / "last.pt")))
    assert all(torch.equal(a, b) for a, b in zip(d_params(adv), d_params(warm)))
    assert int(warm.updates) == 0 and not warm.optimizer.state_dict()["state"]
    resumed = Adversarial(small(init="resume", init_from=str(tmp_path / "last.pt")))
    assert int(resumed.updates) == 2 and resumed.optimizer.state_dict()["state"]
    with pytest.raises(StateMismatch, match="init_from"):
        Adversarial(small(discriminators=SMALL[:1], init="weights_only", init_from=str(tmp_path / "last.pt")))


def test_d_parameters_never_move_through_the_generators_optimizer():
    """Handing every parameter to the generator's optimizer moves none of D's: they get no gradient."""
    torch.manual_seed(0)
    adv, gen = Adversarial(small()), nn.Conv1d(1, 1, 3, padding=1)
    opt = torch.optim.SGD([*gen.parameters(), *adv.parameters()], lr=1.0)
    before = d_params(adv)
    noise, real = waves()
    adv.generator_loss(gen(noise), real).backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, d_params(adv)))


def test_grad_clip_bounds_the_d_gradient():
    torch.manual_seed(0)
    adv = Adversarial(small(grad_clip=1e-3, optimizer={"name": "adam", "lr": 0.0, "weight_decay": 0.0}))
    seen, step = [], adv.optimizer.step

    def step_seeing_the_gradient(*args, **kwargs):
        seen.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in adv.discriminators.parameters()])))
        return step(*args, **kwargs)

    adv.optimizer.step = step_seeing_the_gradient
    adv.update(*waves())
    assert len(seen) == 1 and 0 < seen[0] <= 1e-3 * (1 + 1e-4)


def conv_posts(adv):
    """Every sub-discriminator's last conv (the one that gives its logits)."""
    return [sub.conv_post for d in adv.discriminators for sub in d.discriminators]


def skipped_step(adv, fake, real):
    """One update that must be skipped: what it returns, and whether D, its optimizer and counters stayed."""
    before, lr = d_params(adv), adv.optimizer.param_groups[0]["lr"]
    out = adv.update(fake, real)
    return {
        "d unchanged": all(torch.equal(a, b) for a, b in zip(before, d_params(adv))),
        "adam untouched": all(  # fused Adam makes its state on the first step, skipped or not: all zeros
            all(torch.count_nonzero(v) == 0 for v in state.values())
            for state in adv.optimizer.state_dict()["state"].values()
        ),
        "updates, skipped": (int(adv.updates), int(adv.skipped)),
        "lr stepped": adv.optimizer.param_groups[0]["lr"] < lr,
        "finite d": all(torch.isfinite(p).all() for p in adv.discriminators.parameters()),
    }, out["disc_loss"]


def test_an_infinite_d_loss_skips_the_update_exactly_as_a_nan_does():
    """LSGAN on logits near 1e25 is +inf (its square overflows), not NaN; the skip reads ~isfinite, so both stop
    D's step alike: weights, Adam's state and the counters as a NaN leaves them (the schedule counts the call)."""
    torch.manual_seed(0)
    # no clip: the skip must come from the loss alone (a clip's non-finite norm would skip as well)
    nan_adv, inf_adv = Adversarial(small(grad_clip=0.0)), Adversarial(small(grad_clip=0.0))
    inf_adv.load_state_dict(nan_adv.state_dict())
    fake, real = waves()
    with torch.no_grad():
        for conv in conv_posts(inf_adv):
            conv.bias.fill_(1e25)
    nan_fake = fake.clone()
    nan_fake[0, 0, 5] = float("nan")
    after_nan, nan_loss = skipped_step(nan_adv, nan_fake, real)
    after_inf, inf_loss = skipped_step(inf_adv, fake, real)
    assert torch.isnan(nan_loss) and torch.isinf(inf_loss) and inf_loss > 0
    assert (
        after_inf
        == after_nan
        == {
            "d unchanged": True,
            "adam untouched": True,
            "updates, skipped": (0, 1),
            "lr stepped": True,
            "finite d": True,
        }
    )


def lr(adv):
    return adv.optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("dac", lambda k: 1e-4 * 0.999996**k),  # ExponentialLR(0.999996), per step
        # Vocos's cosine, here over 10 steps after 2 of warm-up
        ("vocos", lambda k: 5e-4 * (k / 2 if k < 2 else 0.5 * (1 + math.cos(math.pi * (k - 2) / 8)))),
    ],
)
def test_a_per_step_schedule_steps_once_per_update_and_never_at_the_epochs_end(preset, expected):
    scheduler = {"name": "cosine", "warmup_steps": 2, "total_steps": 10} if preset == "vocos" else None
    term = AdversarialLoss(small(preset, **({"scheduler": scheduler} if scheduler else {})))
    adv = term.adversarial
    assert lr(adv) == pytest.approx(expected(0), abs=0.0)
    for k in range(1, 5):
        fake, real = waves(seed=k)
        term.update({"recon": fake, "target": real})
        assert lr(adv) == pytest.approx(expected(k), rel=1e-12, abs=1e-15), k
        term.end_epoch()
        term.end_epoch()
        assert lr(adv) == pytest.approx(expected(k), rel=1e-12, abs=1e-15), f"end_epoch after update {k}"


def test_an_epoch_schedule_steps_only_at_the_epochs_end():
    """HiFi-GAN's ExponentialLR(0.999) per epoch: updates leave the lr; each end_epoch multiplies it once."""
    adv = Adversarial(small("hifigan_v1", discriminators=[{"kind": "mpd", "options": {"periods": [2, 3]}}]))
    assert adv.settings.scheduler.interval == "epoch"
    for epoch in range(1, 3):
        for step in range(2):
            adv.update(*waves(seed=10 * epoch + step))
            assert lr(adv) == pytest.approx(2e-4 * 0.999 ** (epoch - 1), rel=1e-12)
        adv.end_epoch()
        assert lr(adv) == pytest.approx(2e-4 * 0.999**epoch, rel=1e-12)


def test_the_clamped_hinge_gives_no_push_where_d_already_scores_the_fake_above_1():
    """Vocos's relu(1 - D(fake)): with every logit above 1 (each conv_post's bias 5; fresh D's logits are near
    1e-3, where a missing clamp cannot show) the generator's adversarial loss is 0 and pushes nothing; the
    plain hinge's -D(fake) would push on."""
    torch.manual_seed(0)
    clamped = Adversarial(small("vocos"))
    plain = Adversarial(small("vocos", loss="hinge"))
    plain.load_state_dict(clamped.state_dict())
    for adv in (clamped, plain):
        with torch.no_grad():
            for conv in conv_posts(adv):
                conv.bias.fill_(5.0)
    fake, real = waves()
    fake.requires_grad_(True)
    with torch.no_grad():
        logits = torch.cat([o.logits.flatten() for subs in clamped.judge(fake) for o in subs])
    assert logits.min() > 1
    gen = clamped(fake, real)["gen"]
    (push,) = torch.autograd.grad(gen, fake)
    assert gen.item() == 0.0 and torch.count_nonzero(push) == 0
    plain_gen = plain(fake, real)["gen"]
    (plain_push,) = torch.autograd.grad(plain_gen, fake)
    assert plain_gen.item() < -1 and torch.count_nonzero(plain_push) > 0
    # the D side is the same hinge for both: relu(1 - real) is 0 here, relu(1 + fake) is 1 + the logit
    assert torch.equal(clamped.update(fake, real)["disc_loss"], plain.update(fake, real)["disc_loss"])
