"""``recipe = "bigvgan_v2"`` against BigVGAN-v2's own training step (bigvgan 2.4.1's train.py, its batch loop: the
D step, the generator's losses, the per-step schedule), at its 44 kHz config.

The anchor's side runs bigvgan's own pieces in train.py's order, with ``h`` its 44 kHz config
(configs/bigvgan_v2_44khz_128band_512x.json) as an ``env.AttrDict``, as train.py builds it: ``optim_d.zero_grad()``;
``mpd(y, y_g_hat.detach())`` and ``mrd(...)`` (the MS-SB-CQTD, ``use_cqtd_instead_of_mrd``) with
``loss.discriminator_loss`` each; ``loss_disc_all.backward()``; ``clip_grad_norm_`` of MPD's and of the CQTD's
parameters apart at ``h.clip_grad_norm``; ``optim_d.step()`` (AdamW over ``chain(mrd, mpd)``); then
``MultiScaleMelSpectrogramLoss(sampling_rate=h.sampling_rate)(y, y_g_hat) * h.lambda_melloss``,
``feature_loss`` and ``generator_loss`` on both stepped discriminators and the sum ``loss_gen_all``; and
``scheduler_d.step()`` (``ExponentialLR(optim_d, h.lr_decay)``) at the end of the batch.

Stood in for: the generator (``y_g_hat = generator(x)``: a given tensor), the data loader (``y``: a given tensor),
``loss_gen_all.backward()`` by ``torch.autograd.grad`` w.r.t. ``y_g_hat``, and the generator's optimizer and
clip (not part of the loss). Sizes: MPD at ``discriminator_channel_mult`` 1/8 and the CQTD at 8 filters (the
published widths, 1 and 128, are compared kind by kind in distill-discriminators: tests/test_cqtd.py at full
width); 8192 samples at 44.1 kHz. ``freeze_step`` is 0 (train.py's default).
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from cqtd_anchors import BIGVGAN_V2_44K, ours_name, signal_carrying, weights
from disc_anchors import anchor
from disc_weights import assert_close, load_anchor, load_state, randomise
from recipe_anchors import assert_same_gradients, assert_same_weights, grads, grads_at_step, pairs, snapshot

from distill_core import CombinedLoss, load_config

pytestmark = [pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")]

H44 = BIGVGAN_V2_44K  # configs/bigvgan_v2_44khz_128band_512x.json (cqtd_anchors)
MPD_WIDTH, CQTD_FILTERS, N = 0.125, 8, 8192


def run_step(clip: float | None = None) -> dict:
    """One batch of train.py on both sides; ``clip`` overrides ``h.clip_grad_norm`` (and the recipe's
    ``grad_clip``) where a test needs the clip to bite."""
    env, discriminators, losses = anchor("bigvgan.env"), anchor("bigvgan.discriminators"), anchor("bigvgan.loss")
    pytest.importorskip(
        "nnAudio.features", reason="nnAudio (BigVGAN's CQT) is not among the anchors: run `make anchors`"
    )
    h = env.AttrDict(
        {**H44, "discriminator_channel_mult": MPD_WIDTH, "cqtd_filters": CQTD_FILTERS}
        | ({"clip_grad_norm": clip} if clip is not None else {})
    )
    torch.manual_seed(0)
    mpd = discriminators.MultiPeriodDiscriminator(h)
    mrd = discriminators.MultiScaleSubbandCQTDiscriminator(copy.deepcopy(h))
    randomise(mpd, 5)
    signal_carrying(mrd, 6)

    terms: dict = {
        "adversarial": {
            "discriminators": [
                {"kind": "mpd", "options": {"width": MPD_WIDTH}},
                {"kind": "cqtd", "options": {"filters": CQTD_FILTERS}},
            ]
        }
    }
    if clip is not None:
        terms["adversarial"]["grad_clip"] = clip
    ours = CombinedLoss(load_config({"recipe": "bigvgan_v2", "terms": terms})).train()
    adv = ours.terms["adversarial"].adversarial
    ours_mpd, ours_cqtd = adv.discriminators
    load_anchor(ours_mpd.discriminators, mpd.discriminators)
    load_state(ours_cqtd, weights(mrd), ours_name)
    matched = [(f"mpd.{n}", a, b) for n, a, b in pairs(ours_mpd.discriminators, mpd.discriminators)] + [
        (f"mrd.{n}", a, b) for n, a, b in pairs(ours_cqtd.discriminators, mrd.discriminators, ours_name)
    ]

    g = torch.Generator().manual_seed(7)
    y_g_hat = torch.tanh(0.5 * torch.randn(2, 1, N, generator=g)).requires_grad_(True)
    y = torch.tanh(0.7 * torch.randn(2, 1, N, generator=g))

    # --- BigVGAN: train.py's batch loop ---
    optim_d = torch.optim.AdamW(
        itertools.chain(mrd.parameters(), mpd.parameters()), h.learning_rate, betas=[h.adam_b1, h.adam_b2]
    )
    scheduler_d = torch.optim.lr_scheduler.ExponentialLR(optim_d, gamma=h.lr_decay, last_epoch=-1)
    fn_mel_loss_multiscale = losses.MultiScaleMelSpectrogramLoss(sampling_rate=h.sampling_rate)
    optim_d.zero_grad()
    y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
    loss_disc_f, _, _ = losses.discriminator_loss(y_df_hat_r, y_df_hat_g)
    y_ds_hat_r, y_ds_hat_g, _, _ = mrd(y, y_g_hat.detach())
    loss_disc_s, _, _ = losses.discriminator_loss(y_ds_hat_r, y_ds_hat_g)
    loss_disc_all = loss_disc_s + loss_disc_f
    loss_disc_all.backward()
    grad_norm_mpd = torch.nn.utils.clip_grad_norm_(mpd.parameters(), h.clip_grad_norm)
    grad_norm_mrd = torch.nn.utils.clip_grad_norm_(mrd.parameters(), h.clip_grad_norm)
    d_grads_theirs = {f"mpd.{n}": p.grad.clone() for n, p in mpd.discriminators.named_parameters()}
    d_grads_theirs |= {f"mrd.{n}": p.grad.clone() for n, p in mrd.discriminators.named_parameters() if p.requires_grad}
    optim_d.step()
    loss_mel = fn_mel_loss_multiscale(y, y_g_hat) * h.lambda_melloss
    y_df_hat_r, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
    loss_fm_f = losses.feature_loss(fmap_f_r, fmap_f_g)
    loss_gen_f, _ = losses.generator_loss(y_df_hat_g)
    y_ds_hat_r, y_ds_hat_g, fmap_s_r, fmap_s_g = mrd(y, y_g_hat)
    loss_fm_s = losses.feature_loss(fmap_s_r, fmap_s_g)
    loss_gen_s, _ = losses.generator_loss(y_ds_hat_g)
    loss_gen_all = loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f + loss_mel
    (expected,) = grads(loss_gen_all, [y_g_hat])
    scheduler_d.step()

    # --- the recipe ---
    batch = {"recon": y_g_hat, "target": y}
    d_grads_ours = grads_at_step(adv.optimizer, {name: mine for name, mine, _ in matched})
    figures = ours.update(batch)
    stepped = snapshot(matched)
    load_anchor(ours_mpd.discriminators, mpd.discriminators)  # the generator's pass reads one D (recipe_anchors.resync)
    load_state(ours_cqtd, weights(mrd), ours_name)
    out = ours(batch)
    (got,) = grads(out["total_loss"], [y_g_hat])
    return locals()


@pytest.fixture(scope="module")
def step():
    return run_step()


@pytest.fixture(scope="module")
def clipped():
    """The clip at 1e-3 of a gradient norm: both discriminators' gradients are clipped, each to its own norm."""
    return run_step(clip=1e-3)


def test_d_step_loss_and_gradients_equal_bigvgans(step):
    assert_close(step["figures"]["adversarial_disc_loss"], step["loss_disc_all"].detach(), "loss_disc_all")
    assert_same_gradients(step["d_grads_ours"], step["d_grads_theirs"], "bigvgan D")


def test_d_weights_and_learning_rate_after_the_step_equal_bigvgans(step):
    gradients = {"ours": step["d_grads_ours"], "theirs": step["d_grads_theirs"]}
    assert_same_weights(step["stepped"], "bigvgan", gradients)
    ours_lr = step["adv"].optimizer.param_groups[0]["lr"]
    assert ours_lr == pytest.approx(step["optim_d"].param_groups[0]["lr"], rel=1e-12)
    assert ours_lr == pytest.approx(1e-4 * 0.9999996, rel=1e-12)  # stepped once, in the batch


def test_each_discriminator_is_clipped_apart_as_bigvgans(clipped):
    """With the clip biting, MPD's and the CQTD's gradients each come out at norm 1e-3 on both sides (one clip of
    the whole would leave their sum at 1e-3)."""
    assert clipped["grad_norm_mpd"] > 1e-2 and clipped["grad_norm_mrd"] > 1e-2
    assert_same_gradients(clipped["d_grads_ours"], clipped["d_grads_theirs"], "bigvgan D, clipped")
    for tag in ("mpd.", "mrd."):
        part = [g.flatten() for n, g in clipped["d_grads_ours"].items() if n.startswith(tag)]
        assert torch.linalg.vector_norm(torch.cat(part)).item() == pytest.approx(1e-3, rel=1e-4), tag


def test_generator_terms_and_total_equal_bigvgans(step):
    out = step["out"]
    assert_close(15 * out["mel_loss"], step["loss_mel"], "loss_mel (the multi-scale mel x lambda_melloss)")
    assert_close(out["adversarial_gen_loss"], step["loss_gen_s"] + step["loss_gen_f"], "loss_gen_s + loss_gen_f")
    assert_close(2 * out["adversarial_feat_loss"], step["loss_fm_s"] + step["loss_fm_f"], "loss_fm (x2 inside)")
    assert_close(out["total_loss"], step["loss_gen_all"], "loss_gen_all")


def test_generator_gradient_equals_bigvgans(step):
    assert step["expected"].abs().max() > 0
    assert_close(step["got"], step["expected"], "d loss_gen_all / d y_g_hat")


def test_the_recipe_reads_the_batch_it_declares():
    config = load_config({"recipe": "bigvgan_v2"})
    assert config.batch == {"recon": "B, C, N", "target": "B, C, N"}
    assert config.terms["mel"].weight == 15.0
    adversarial = config.terms["adversarial"]
    assert (adversarial.gen_weight, adversarial.feat_weight, adversarial.grad_clip) == (1.0, 2.0, 500.0)
    assert adversarial.grad_clip_scope == "each"
    assert [(d.kind, d.include_logits) for d in adversarial.discriminators] == [("mpd", True), ("cqtd", False)]
    assert adversarial.discriminators[1].options["sample_rate"] == 44100
