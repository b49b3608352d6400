"""Parity with the anchors' own code: same weights, same inputs -> the same logits, feature maps and losses.

The anchors come from `make anchors` (tests/anchors.py says how they are imported); without them these tests
skip, saying so. Full widths where the anchor has no channel option (DAC, Vocos), on short signals.
"""

from __future__ import annotations

import pytest
import torch
from disc_anchors import anchor
from disc_weights import assert_close, audiocraft_unwrap, dac_unwrap, load_anchor, randomise
from distill_discriminators import MPD, Adversarial, AdversarialConfig, MPDConfig


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
        discriminators=[
            {"kind": "mpd", "options": {"periods": [3], "always_pad": True, "normalize_input": True}},
            {"kind": "mrd", "options": {"fft_sizes": [2048, 512], "padding": "dac", "normalize_input": True}},
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


@pytest.fixture(scope="module")
def vocos_pair():
    disc = anchor("vocos.discriminators")
    torch.manual_seed(0)
    mpd, mrd = disc.MultiPeriodDiscriminator(periods=(5,)), disc.MultiResolutionDiscriminator(fft_sizes=(512, 256))
    config = AdversarialConfig(
        preset="vocos",
        discriminators=[
            {"kind": "mpd", "feat_reduce": "mean", "options": {"periods": [5], "first_layer_features": False}},
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
    )
    ours = Adversarial(config)
    randomise(mpd, 1)
    randomise(mrd, 2)
    load_anchor(ours.discriminators[0].discriminators, mpd.discriminators)
    load_anchor(ours.discriminators[1].discriminators, mrd.discriminators)
    return (mpd, mrd), ours


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


def test_vocos_losses_equal_vocos_experiment(vocos_pair):
    """vocos/experiment.py (training_step): D = mp + 0.1 * mrd / n_mrd; G = gen_mp + 0.1 * gen_mrd / n_mrd;
    FM = fm_mp / n_mp + 0.1 * fm_mrd / n_mrd (its mrd_loss_coeff = 0.1 in configs/vocos.yaml)."""
    (mpd, mrd), ours = vocos_pair
    loss = anchor("vocos.loss")
    fake, real = waves(seed=2)
    with torch.no_grad():
        r_mp, g_mp, fr_mp, fg_mp = mpd(y=real[:, 0], y_hat=fake[:, 0])
        r_mrd, g_mrd, fr_mrd, fg_mrd = mrd(y=real[:, 0], y_hat=fake[:, 0])
        d_mp, _, _ = loss.DiscriminatorLoss()(r_mp, g_mp)
        d_mrd, d_mrd_real, _ = loss.DiscriminatorLoss()(r_mrd, g_mrd)
        gen_mp, _ = loss.GeneratorLoss()(g_mp)
        gen_mrd, gen_mrd_list = loss.GeneratorLoss()(g_mrd)
        fm = loss.FeatureMatchingLoss()
        d_expected = d_mp + 0.1 * d_mrd / len(d_mrd_real)
        g_expected = gen_mp + 0.1 * gen_mrd / len(gen_mrd_list)
        f_expected = fm(fr_mp, fg_mp) / len(fr_mp) + 0.1 * fm(fr_mrd, fg_mrd) / len(fr_mrd)
        out = ours(fake, real)
    assert_close(out["gen"], g_expected[0], "vocos gen loss")
    assert_close(out["feat"], f_expected[0], "vocos feature loss")
    assert_close(ours.update(fake, real)["disc_loss"], d_expected[0], "vocos discriminator loss")


# --- audiocraft (EnCodec): MS-STFTD at a small `filters`, AdversarialLoss with hinge and normalised FM -------


@pytest.fixture(scope="module")
def audiocraft_pair():
    import sys
    import types

    msstftd = anchor("audiocraft.adversarial.discriminators.msstftd")
    flashy = sys.modules["flashy"]  # audiocraft's distributed and read-only helpers: no-ops in one process
    from contextlib import nullcontext

    flashy.distrib = types.SimpleNamespace(broadcast_model=lambda m: None, eager_sync_model=lambda m: nullcontext())
    flashy.utils = types.SimpleNamespace(readonly=lambda m: nullcontext())
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


def test_hifigan_mpd_and_losses_equal_bigvgans():
    import types

    disc, loss = anchor("bigvgan.discriminators"), anchor("bigvgan.loss")
    h = types.SimpleNamespace(discriminator_channel_mult=0.25, use_spectral_norm=False, mpd_reshapes=[2, 3, 5])
    torch.manual_seed(0)
    theirs = disc.MultiPeriodDiscriminator(h)
    randomise(theirs, 5)
    ours = MPD(MPDConfig(periods=(2, 3, 5), width=0.25))
    load_anchor(ours.discriminators, theirs.discriminators)
    fake, real = waves(n=2999, seed=5)
    with torch.no_grad():
        r, g, fr, fg = theirs(real, fake)
        got_fake, got_real = ours(fake), ours(real)
        compare_subs(got_fake, [(f[:-1], f[-1]) for f in fg], "hifigan mpd")
        from distill_discriminators import discriminator_loss, feature_matching, generator_loss

        assert_close(discriminator_loss("lsgan", got_real, got_fake), loss.discriminator_loss(r, g)[0], "D loss")
        assert_close(generator_loss("lsgan", got_fake), loss.generator_loss(g)[0], "G loss")
        assert_close(
            2 * feature_matching(got_real, got_fake, include_logits=True), loss.feature_loss(fr, fg), "feature loss x2"
        )
