"""Parity with the anchors' own code: same weights, same inputs -> the same logits, feature maps and losses.

The anchors come from `make anchors` (tests/anchors.py says how they are imported); without them these tests
skip, saying so. Full widths where the anchor has no channel option (DAC, Vocos), on short signals.
"""

from __future__ import annotations

import copy

import pytest
import torch
from disc_anchors import anchor
from disc_weights import assert_close, audiocraft_unwrap, dac_unwrap, load_anchor, randomise, renamed
from distill_discriminators import Adversarial, AdversarialConfig


def waves(b=2, n=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, n, generator=g), 0.5 * torch.randn(b, 1, n, generator=g)


def compare_subs(ours, fmaps_and_logits, what):
    """ours: list[SubOutput]; theirs: per sub (features, logits)."""
    assert len(ours) == len(fmaps_and_logits), what
    for i, (sub, (features, logits)) in enumerate(zip(ours, fmaps_and_logits)):
        assert len(sub.features) == len(features), f"{what}[{i}]: {len(sub.features)} vs {len(features)} maps"
        for j, (a, b) in enumerate(zip(sub.features, features)):
            assert_close(a, b, f"{what}[{i}].features[{j}]")
        assert_close(sub.logits.reshape(logits.shape), logits, f"{what}[{i}].logits")


# --- DAC: Discriminator (MPD + MRD on preprocessed audio) and GANLoss -----------------------------------------


@pytest.fixture(scope="module")
def dac_pair():
    disc = anchor("dac.model.discriminator")
    torch.manual_seed(0)
    theirs = disc.Discriminator(periods=[3], fft_sizes=[2048, 512])
    config = AdversarialConfig(
        preset="dac",
        discriminators=[  # the rest (always_pad, normalize_input, padding 'dac') is the preset's
            {"kind": "mpd", "options": {"periods": [3]}},
            {"kind": "mrd", "options": {"fft_sizes": [2048, 512]}},
        ],
    )
    ours = Adversarial(config)
    randomise(theirs)
    # DAC's Discriminator lists MPD's and MRD's sub-discriminators in one ModuleList; ours keeps one per kind
    flat = torch.nn.ModuleList([*ours.discriminators[0].discriminators, *ours.discriminators[1].discriminators])
    load_anchor(flat, theirs.discriminators, dac_unwrap)
    return theirs, ours


def test_dac_discriminator_outputs_equal_dacs(dac_pair):
    theirs, ours = dac_pair
    x, _ = waves()  # 3000 samples: a multiple of the period, where DAC pads a whole period anyway
    with torch.no_grad():
        expected = [(fmap[:-1], fmap[-1]) for fmap in theirs(x)]
        got = [sub for subs in ours.judge(x) for sub in subs]
    compare_subs(got, expected, "dac")


def test_dac_gan_losses_equal_dacs(dac_pair):
    theirs, ours = dac_pair
    signal = anchor("audiotools").AudioSignal
    loss = anchor("dac.nn.loss").GANLoss(theirs)
    fake, real = waves(seed=1)
    with torch.no_grad():
        d_loss = loss.discriminator_loss(signal(fake, 44100), signal(real, 44100))
        g_loss, f_loss = loss.generator_loss(signal(fake, 44100), signal(real, 44100))
        out = ours(fake, real)
    assert_close(out["gen"], g_loss, "dac gen loss")
    assert_close(out["feat"], f_loss, "dac feature loss")
    assert_close(ours.update(fake, real)["disc_loss"], d_loss, "dac discriminator loss")  # before its step


# --- Vocos: MPD, MRD, hinge losses, feature matching, and the experiment's combination -------------------------


def make_vocos_pair(periods=(2, 3, 5), fft_sizes=(512, 256), dtype=torch.float32):
    """Vocos's MPD and MRD, built as they build themselves under ``dtype`` as the default dtype (in float64 the
    MRD's Spectrogram holds a float64 Hann window, not torch's float32 one cast up), and the vocos preset with
    only the periods and FFT sizes given: every other option, weight and reduction is the preset's."""
    disc = anchor("vocos.discriminators")
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        mpd = disc.MultiPeriodDiscriminator(periods=periods)
        mrd = disc.MultiResolutionDiscriminator(fft_sizes=fft_sizes)
    finally:
        torch.set_default_dtype(default)
    config = AdversarialConfig(
        preset="vocos",
        discriminators=[
            {"kind": "mpd", "options": {"periods": list(periods)}},
            {"kind": "mrd", "options": {"fft_sizes": list(fft_sizes)}},
        ],
    )
    ours = Adversarial(config).to(dtype)
    randomise(mpd, 1)
    randomise(mrd, 2)
    load_anchor(ours.discriminators[0].discriminators, mpd.discriminators)
    load_anchor(ours.discriminators[1].discriminators, mrd.discriminators)
    return (mpd, mrd), ours


@pytest.fixture(scope="module")
def vocos_pair():
    """Three periods, so a sum and a mean over them differ."""
    return make_vocos_pair()


def test_vocos_discriminator_outputs_equal_vocos(vocos_pair):
    (mpd, mrd), ours = vocos_pair
    x, y = waves(n=2999)  # not a multiple of 5: pads
    with torch.no_grad():
        got = ours.judge(x)
        for i, d in enumerate((mpd, mrd)):
            _, logits, _, fmaps = d(y=y[:, 0], y_hat=x[:, 0])  # vocos takes [B, T]
            # vocos keeps the logits as the last feature map too; ours are SubOutput.logits
            compare_subs(got[i], [(f[:-1], f[-1]) for f in fmaps], f"vocos[{i}]")
            for sub, lg in zip(got[i], logits):
                assert_close(sub.logits.flatten(1) if i == 0 else sub.logits, lg, f"vocos[{i}] logits")


class Emit(torch.nn.Module):
    """A stand-in generator for VocosExp: whatever it is given, the waveform ``out`` [B, T]."""

    out: torch.Tensor

    def forward(self, x, **kwargs):
        return self.out


def vocos_experiment(mpd, mrd):
    """vocos's own VocosExp (experiment.py) holding these discriminators, run out of a Trainer: ``log`` keeps
    what it logs and ``global_step`` is not a multiple of 1000 (so no audio is logged); the generator is an
    Emit. mrd_loss_coeff 0.1 as configs/vocos.yaml; mel_loss_coeff 0, so a generator step's total is the
    adversarial part alone (the mel loss is another term)."""
    experiment = anchor("vocos.experiment")

    class Run(experiment.VocosExp):
        global_step = 1

        def log(self, name, value, **kwargs):
            self.logged[name] = value

    run = Run(Emit(), torch.nn.Identity(), torch.nn.Identity(), 24000, 5e-4, mel_loss_coeff=0.0, mrd_loss_coeff=0.1)
    run.multiperioddisc, run.multiresddisc = mpd, mrd
    run.train_discriminator, run.logged = True, {}
    return run


def update_seeing_gradients(adv, fake, real):
    """``adv.update(fake, real)``, and D's gradients as its optimizer step sees them (update frees them after)."""
    seen, step = {}, adv.optimizer.step

    def step_seeing_gradients(*args, **kwargs):
        seen.update({id(p): p.grad.clone() for p in adv.discriminators.parameters()})
        return step(*args, **kwargs)

    adv.optimizer.step = step_seeing_gradients
    try:
        return adv.update(fake, real), seen
    finally:
        del adv.optimizer.step


def assert_same_d_gradients(ours_subs, theirs_subs, seen, what, tol=1e-5):
    """Every parameter's gradient of our sub-discriminators (``seen``, by id) equals the anchor's, name for
    name (disc_weights.renamed)."""
    ours = dict(ours_subs.named_parameters())
    theirs = {renamed(k, ours): p.grad for k, p in theirs_subs.named_parameters()}
    assert set(ours) == set(theirs)
    scale = max(g.abs().max().item() for g in theirs.values())  # a bias's gradient may be 1e-6 of a weight's
    for name, p in ours.items():
        err = (seen[id(p)] - theirs[name]).abs().max().item()
        assert err <= tol * scale, f"{what} {name}: max difference {err:.3g} > {tol} x {scale:.3g} (D's largest)"


def vocos_steps(pair, fake, real, tol=1e-5, d_gradients=True):
    """Vocos's generator step then its D step (experiment.py's training_step, optimizer_idx 1 then 0), and
    ours on a copy (its D step moves D): the losses, the generator's gradient on fake and D's parameter
    gradients agree to ``tol`` relative."""
    (mpd, mrd), ours = pair
    ours = copy.deepcopy(ours)
    run = vocos_experiment(mpd, mrd).to(fake.dtype)
    theirs_fake, ours_fake = fake[:, 0].clone().requires_grad_(True), fake.clone().requires_grad_(True)
    run.feature_extractor.out = theirs_fake
    g_theirs = run.training_step(real[:, 0], 0, optimizer_idx=1)
    g_theirs.backward()
    g_ours = ours.generator_loss(ours_fake, real)
    g_ours.backward()
    assert_close(g_ours, g_theirs[0], "vocos generator loss", tol)
    assert_close(ours_fake.grad[:, 0], theirs_fake.grad, "vocos generator gradient on fake", 10 * tol)
    run.feature_extractor.out = fake[:, 0]
    d_theirs = run.training_step(real[:, 0], 0, optimizer_idx=0)
    mpd.zero_grad(set_to_none=True)
    mrd.zero_grad(set_to_none=True)
    d_theirs.backward()
    out, seen = update_seeing_gradients(ours, fake, real)
    assert_close(out["disc_loss"], d_theirs[0], "vocos discriminator loss", tol)
    if d_gradients:
        assert_same_d_gradients(ours.discriminators[0].discriminators, mpd.discriminators, seen, "vocos mpd", tol)
        assert_same_d_gradients(ours.discriminators[1].discriminators, mrd.discriminators, seen, "vocos mrd", tol)
    mpd.zero_grad(set_to_none=True)
    mrd.zero_grad(set_to_none=True)
    return run.logged


def test_vocos_losses_and_gradients_equal_vocos_experiment(vocos_pair):
    """The preset's D loss, generator loss and both sides' gradients are experiment.py's own: MPD's losses,
    as MRD's, divided by the count of sub-discriminators (a sum would be 3x here, 5x with vocos's 5 periods).
    In float32 the losses and the gradient on fake; in float64 D's gradients too, to 1e-10 (in float32 a
    weight-norm gain's gradient is a difference of large terms: 1e-3 apart on either side's own rounding)."""
    fake, real = waves(n=600, seed=2)
    logged = vocos_steps(vocos_pair, fake, real, d_gradients=False)
    assert set(logged) >= {"discriminator/multi_period_loss", "generator/multi_period_loss"}
    pair = make_vocos_pair(periods=(2,), dtype=torch.float64)  # one full-width period: float64 convs are slow
    vocos_steps(pair, fake.double(), real.double(), tol=1e-10)


def test_vocos_clamped_hinge_equals_vocos_where_d_scores_above_1():
    """With logits well past +-1 (each conv_post's gain x30), where the clamp in relu(1 - fake) decides."""
    (mpd, mrd), ours = pair = make_vocos_pair(periods=(2, 3))
    for theirs_subs, ours_subs in (
        (mpd.discriminators, ours.discriminators[0].discriminators),
        (mrd.discriminators, ours.discriminators[1].discriminators),
    ):
        for t, o in zip(theirs_subs, ours_subs):
            with torch.no_grad():
                t.conv_post.weight_g.mul_(30.0)
                o.conv_post.parametrizations.weight.original0.mul_(30.0)
    fake, real = waves(n=600, seed=3)
    with torch.no_grad():
        logits = torch.cat([sub.logits.flatten() for subs in ours.judge(fake) for sub in subs])
    assert (logits > 1).float().mean() > 0.1 and (logits < 1).float().mean() > 0.1  # both sides of the clamp
    vocos_steps(pair, fake, real, d_gradients=False)


# --- audiocraft (EnCodec): MS-STFTD at a small `filters`, AdversarialLoss with hinge and normalised FM -------


@pytest.fixture(scope="module")
def audiocraft_pair():
    msstftd = anchor("audiocraft.adversarial.discriminators.msstftd")
    options = dict(filters=4, n_ffts=[256, 512, 128], hop_lengths=[64, 128, 32], win_lengths=[256, 400, 128])
    torch.manual_seed(0)
    theirs = msstftd.MultiScaleSTFTDiscriminator(**options, activation_params={"negative_slope": 0.3})
    randomise(theirs, 3)
    config = AdversarialConfig(
        preset="encodec",
        discriminators=[{"kind": "msstftd", "reduce": "mean", "feat_reduce": "mean", "options": options}],
    )
    ours = Adversarial(config)
    load_anchor(ours.discriminators[0].discriminators, theirs.discriminators, audiocraft_unwrap)
    return theirs, ours


def test_msstftd_outputs_equal_audiocrafts(audiocraft_pair):
    theirs, ours = audiocraft_pair
    x, _ = waves(n=2048)
    with torch.no_grad():
        logits, fmaps = theirs(x)
        got = ours.judge(x)[0]
    compare_subs(got, list(zip(fmaps, logits)), "msstftd")


def test_encodec_losses_equal_audiocrafts_adversarial_loss(audiocraft_pair):
    theirs, ours = audiocraft_pair
    losses = anchor("audiocraft.adversarial.losses")
    optimizer = torch.optim.SGD(theirs.parameters(), lr=0.0)  # their train_adv steps: lr 0 leaves D as it is
    adv = losses.AdversarialLoss(
        theirs,
        optimizer,
        loss=losses.get_adv_criterion("hinge"),
        loss_real=losses.get_real_criterion("hinge"),
        loss_fake=losses.get_fake_criterion("hinge"),
        loss_feat=losses.FeatureMatchingLoss(torch.nn.L1Loss(), normalize=True),
    )
    fake, real = waves(n=2048, seed=4)
    with torch.no_grad():
        gen, feat = adv(fake, real)
        out = ours(fake, real)
    assert_close(out["gen"], gen, "encodec gen loss")
    assert_close(out["feat"], feat, "encodec feature loss")
    assert_close(ours.update(fake, real)["disc_loss"], adv.train_adv(fake, real).detach(), "encodec D loss")


# --- HiFi-GAN's MPD as BigVGAN ships it (a channel multiplier), and HiFi-GAN's losses ----------------------


def test_hifigan_preset_equals_bigvgans_losses_in_train_pys_order():
    """The hifigan_v1 preset (its MPD at BigVGAN's channel multiplier) against bigvgan's own loss functions,
    summed as its train.py sums them: D ``loss_disc_f`` (= discriminator_loss of the MPD's scores), G
    ``loss_gen_f + loss_fm_f``, where feature_loss carries HiFi-GAN's lambda 2 inside it, and the preset's
    gen_weight 1 and feat_weight 2 must give the same total."""
    import types

    disc, loss = anchor("bigvgan.discriminators"), anchor("bigvgan.loss")
    h = types.SimpleNamespace(discriminator_channel_mult=0.25, use_spectral_norm=False, mpd_reshapes=[2, 3, 5])
    torch.manual_seed(0)
    theirs = disc.MultiPeriodDiscriminator(h)
    randomise(theirs, 5)
    config = AdversarialConfig(
        preset="hifigan_v1", discriminators=[{"kind": "mpd", "options": {"periods": [2, 3, 5], "width": 0.25}}]
    )
    ours = Adversarial(config)
    load_anchor(ours.discriminators[0].discriminators, theirs.discriminators)
    fake, real = waves(n=2999, seed=5)
    with torch.no_grad():
        compare_subs(ours.judge(fake)[0], [(f[:-1], f[-1]) for f in theirs(real, fake)[3]], "hifigan mpd")
    theirs_fake, ours_fake = fake.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    _, y_df_hat_g, fmap_f_r, fmap_f_g = theirs(real, theirs_fake)  # train.py's generator pass: mpd(y, y_g_hat)
    loss_fm_f = loss.feature_loss(fmap_f_r, fmap_f_g)
    loss_gen_f, _ = loss.generator_loss(y_df_hat_g)
    g_theirs = loss_gen_f + loss_fm_f
    g_theirs.backward()
    g_ours = ours.generator_loss(ours_fake, real)
    g_ours.backward()
    assert_close(g_ours, g_theirs, "hifigan generator loss")
    assert_close(ours_fake.grad, theirs_fake.grad, "hifigan generator gradient on fake", 1e-4)
    with torch.no_grad():
        y_df_hat_r, y_df_hat_g, _, _ = theirs(real, fake)  # train.py's D pass: mpd(y, y_g_hat.detach())
        loss_disc_f, _, _ = loss.discriminator_loss(y_df_hat_r, y_df_hat_g)
    assert_close(ours.update(fake, real)["disc_loss"], loss_disc_f, "hifigan discriminator loss")
