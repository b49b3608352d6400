"""``recipe = "hifigan_v1"`` against HiFi-GAN's own training step (jik876/hifi-gan train.py, lines 122-153).

HiFi-GAN is not on a package registry. bigvgan 2.4.1 (installed by `make anchors`) ships HiFi-GAN's code for
these pieces: ``meldataset.mel_spectrogram`` (HiFi-GAN's, with ``return_complex``), ``loss.feature_loss``
(x2 inside), ``loss.discriminator_loss`` and ``loss.generator_loss`` (HiFi-GAN's least squares), and
``discriminators.MultiPeriodDiscriminator`` (HiFi-GAN's MPD with a channel multiplier), so the anchor's side runs
those, in train.py's order: the generator's mel (line 123), D's zero_grad, MPD on detached output,
``discriminator_loss``, backward, AdamW's step (lines 126-139; config_v1.json's lr and betas), then the mel L1 x45
(line 145), MPD on the output, ``feature_loss`` and ``generator_loss`` on the stepped D and the sum (lines 147-153).

Stood in for: the generator (line 122: its output is a given tensor), the data loader's target mel (line 116: the
same ``mel_spectrogram`` of the target with ``fmax_for_loss``, as meldataset.py's ``__getitem__`` computes it),
``loss_gen_all.backward()`` (line 155) by ``torch.autograd.grad``; and the MSD (lines 133-134, 148-152), which no
installed package ships: the recipe's D is changed term by term to the MPD alone here (MPD at width 1/4, bigvgan's
``discriminator_channel_mult``, periods 2 and 3, on 0.25 s at 22.05 kHz). HiFi-GAN's MSD is compared with HiFi-GAN's
own code through golden tensors in distill-discriminators (tests/test_msd_golden.py), and, with
``DISTILL_HIFIGAN_CHECKOUT`` naming a checkout of jik876/hifi-gan, the whole recipe (MPD and MSD) with its
models.py in ``test_the_whole_recipe_equals_hifigans_train_py``.
"""

from __future__ import annotations

import itertools
import os
import types
from pathlib import Path

import pytest
import torch
from disc_anchors import anchor
from disc_weights import assert_close, load_anchor, randomise
from recipe_anchors import (
    assert_same_gradients,
    assert_same_weights,
    grads,
    grads_at_step,
    pairs,
    resync,
    snapshot,
)

from distill_core import CombinedLoss, load_config

pytestmark = [pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")]

RATE = 22050
PERIODS, WIDTH = [2, 3], 0.25
H = dict(n_fft=1024, num_mels=80, sampling_rate=RATE, hop_size=256, win_size=1024, fmin=0, fmax=None)  # config_v1.json


@pytest.fixture(scope="module")
def step():
    discriminators, losses = anchor("bigvgan.discriminators"), anchor("bigvgan.loss")
    mel_spectrogram = anchor("bigvgan.meldataset").mel_spectrogram
    h = types.SimpleNamespace(discriminator_channel_mult=WIDTH, use_spectral_norm=False, mpd_reshapes=PERIODS)
    torch.manual_seed(0)
    mpd = discriminators.MultiPeriodDiscriminator(h)
    randomise(mpd, 21)
    config = load_config(
        {
            "recipe": "hifigan_v1",
            "terms": {
                "adversarial": {"discriminators": [{"kind": "mpd", "options": {"periods": PERIODS}}], "width": WIDTH}
            },
        }
    )
    ours = CombinedLoss(config).train()
    adv = ours.terms["adversarial"].adversarial
    load_anchor(adv.discriminators[0].discriminators, mpd.discriminators)
    matched = pairs(adv.discriminators[0].discriminators, mpd.discriminators)

    g = torch.Generator().manual_seed(3)
    fake = torch.tanh(0.5 * torch.randn(2, 1, RATE // 4, generator=g)).requires_grad_(True)
    real = torch.tanh(0.7 * torch.randn(2, 1, RATE // 4, generator=g))

    # --- HiFi-GAN: train.py lines 122-153 ---
    optim_d = torch.optim.AdamW(mpd.parameters(), 2e-4, betas=[0.8, 0.99])
    y, y_g_hat = real, fake
    y_mel = mel_spectrogram(y.squeeze(1), **H)
    y_g_hat_mel = mel_spectrogram(y_g_hat.squeeze(1), **H)
    optim_d.zero_grad()
    y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
    loss_disc_f, _, _ = losses.discriminator_loss(y_df_hat_r, y_df_hat_g)
    loss_disc_all = loss_disc_f
    loss_disc_all.backward()
    d_grads_theirs = {name: p.grad.clone() for name, p in mpd.discriminators.named_parameters()}
    optim_d.step()
    loss_mel = torch.nn.functional.l1_loss(y_mel, y_g_hat_mel) * 45
    y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
    loss_fm_f = losses.feature_loss(fmap_f_r, fmap_f_g)
    loss_gen_f, _ = losses.generator_loss(y_df_hat_g)
    loss_gen_all = loss_gen_f + loss_fm_f + loss_mel
    (expected,) = grads(loss_gen_all, [fake])

    # --- the recipe ---
    batch = {"recon": fake, "target": real}
    d_grads_ours = grads_at_step(adv.optimizer, {name: mine for name, mine, _ in matched})
    figures = ours.update(batch)
    weights = snapshot(matched)
    resync(adv.discriminators[0].discriminators, mpd.discriminators)
    out = ours(batch)
    (got,) = grads(out["total_loss"], [fake])
    return locals()


def test_d_step_loss_and_gradients_equal_hifigans(step):
    assert_close(step["figures"]["adversarial_disc_loss"], step["loss_disc_all"].detach(), "loss_disc_all")
    assert_same_gradients(step["d_grads_ours"], step["d_grads_theirs"], "hifigan D")


def test_d_weights_after_the_step_equal_hifigans(step):
    assert_same_weights(step["weights"], "hifigan", {"ours": step["d_grads_ours"], "theirs": step["d_grads_theirs"]})


def test_generator_terms_and_total_equal_hifigans(step):
    out = step["out"]
    assert_close(45 * out["hifigan_mel_loss"], step["loss_mel"], "loss_mel")
    assert_close(out["adversarial_gen_loss"], step["loss_gen_f"], "loss_gen_f")
    assert_close(2 * out["adversarial_feat_loss"], step["loss_fm_f"], "loss_fm_f (x2 in feature_loss)")
    assert_close(out["total_loss"], step["loss_gen_all"], "loss_gen_all")


def test_generator_gradient_equals_hifigans(step):
    assert step["expected"].abs().max() > 0
    assert_close(step["got"], step["expected"], "d loss_gen_all / d y_g_hat")


def test_the_recipe_reads_the_batch_it_declares():
    config = load_config({"recipe": "hifigan_v1"})
    assert config.batch == {"recon": "B, C, N", "target": "B, C, N"}
    assert config.terms["hifigan_mel"].weight == 45.0
    adversarial = config.terms["adversarial"]
    assert (adversarial.gen_weight, adversarial.feat_weight) == (1.0, 2.0)
    assert [d.kind for d in adversarial.discriminators] == ["mpd", "msd"]


CHECKOUT = os.environ.get("DISTILL_HIFIGAN_CHECKOUT")


@pytest.mark.skipif(
    not CHECKOUT,
    reason="set DISTILL_HIFIGAN_CHECKOUT to a checkout of jik876/hifi-gan (on no registry) to compare the whole D",
)
def test_the_whole_recipe_equals_hifigans_train_py():
    """The recipe's own D (MPD x5 at full width, MSD at width 1/8) against HiFi-GAN's models.py from a checkout,
    train.py lines 126-153: both D steps, then the generator's losses, with HiFi-GAN's MSD in eval mode for the
    generator's pass (its train mode runs two more power iterations there; ours reads D unchanged). The mel is
    bigvgan's copy of HiFi-GAN's ``mel_spectrogram``: HiFi-GAN's own meldataset.py calls librosa's ``mel``
    positionally, which librosa 0.11 refuses."""
    from make_msd_golden import import_models

    models = import_models(Path(CHECKOUT).resolve(), 0.125)  # MSD's Conv1d channels x 1/8; MPD as published
    losses, mel_spectrogram = models, anchor("bigvgan.meldataset").mel_spectrogram
    torch.manual_seed(0)
    mpd, msd = models.MultiPeriodDiscriminator(), models.MultiScaleDiscriminator()
    config = load_config(
        {
            "recipe": "hifigan_v1",
            "terms": {
                "adversarial": {"discriminators": [{"kind": "mpd"}, {"kind": "msd", "options": {"width": 0.125}}]}
            },
        }
    )
    ours = CombinedLoss(config).train()
    adv = ours.terms["adversarial"].adversarial
    for mine, theirs in zip(adv.discriminators, (mpd, msd)):
        load_anchor(mine.discriminators, theirs.discriminators)
    matched = [
        (f"{tag}.{n}", a, b)
        for tag, mine, theirs in (("mpd", adv.discriminators[0], mpd), ("msd", adv.discriminators[1], msd))
        for n, a, b in pairs(mine.discriminators, theirs.discriminators)
    ]
    g = torch.Generator().manual_seed(9)
    y_g_hat = torch.tanh(0.5 * torch.randn(2, 1, RATE // 4, generator=g)).requires_grad_(True)
    y = torch.tanh(0.7 * torch.randn(2, 1, RATE // 4, generator=g))

    optim_d = torch.optim.AdamW(itertools.chain(msd.parameters(), mpd.parameters()), 2e-4, betas=[0.8, 0.99])
    y_mel, y_g_hat_mel = mel_spectrogram(y.squeeze(1), **H), mel_spectrogram(y_g_hat.squeeze(1), **H)
    mpd.train(), msd.train()
    optim_d.zero_grad()
    y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
    loss_disc_f, _, _ = losses.discriminator_loss(y_df_hat_r, y_df_hat_g)
    y_ds_hat_r, y_ds_hat_g, _, _ = msd(y, y_g_hat.detach())
    loss_disc_s, _, _ = losses.discriminator_loss(y_ds_hat_r, y_ds_hat_g)
    loss_disc_all = loss_disc_s + loss_disc_f
    loss_disc_all.backward()
    d_grads_theirs = {f"mpd.{n}": p.grad.clone() for n, p in mpd.discriminators.named_parameters()}
    d_grads_theirs.update({f"msd.{n}": p.grad.clone() for n, p in msd.discriminators.named_parameters()})
    optim_d.step()
    msd.eval()
    loss_mel = torch.nn.functional.l1_loss(y_mel, y_g_hat_mel) * 45
    y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
    y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = msd(y, y_g_hat)
    loss_fm_f, loss_fm_s = losses.feature_loss(fmap_f_r, fmap_f_g), losses.feature_loss(fmap_s_r, fmap_s_g)
    loss_gen_f, _ = losses.generator_loss(y_df_hat_g)
    loss_gen_s, _ = losses.generator_loss(y_ds_hat_g)
    loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel
    (expected,) = grads(loss_gen_all, [y_g_hat])

    batch = {"recon": y_g_hat, "target": y}
    d_grads_ours = grads_at_step(adv.optimizer, {name: mine for name, mine, _ in matched})
    figures = ours.update(batch)
    assert_close(figures["adversarial_disc_loss"], loss_disc_all.detach(), "loss_disc_all")
    assert_same_gradients(d_grads_ours, d_grads_theirs, "hifigan D")
    assert_same_weights(snapshot(matched), "hifigan", {"ours": d_grads_ours, "theirs": d_grads_theirs})
    for mine, theirs in zip(adv.discriminators, (mpd, msd)):
        resync(mine.discriminators, theirs.discriminators)  # spectral norm's vectors too: HiFi-GAN's state
    out = ours(batch)
    (got,) = grads(out["total_loss"], [y_g_hat])
    assert_close(out["total_loss"], loss_gen_all.detach(), "loss_gen_all")
    assert_close(got, expected, "d loss_gen_all / d y_g_hat")
