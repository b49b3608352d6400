"""``recipe = "dac"`` against DAC's own training step (descript-audio-codec 1.0.0, scripts/train.py ``train_loop``).

scripts/ is not in the wheel, so the test runs train_loop's lines 243-274 itself, in their order, with dac's own
classes: ``GANLoss.discriminator_loss`` (line 244), D's zero_grad, backward, ``clip_grad_norm_(..., 10.0)``,
AdamW's step and ExponentialLR's (lines 246-253), then ``MelSpectrogramLoss`` and ``GANLoss.generator_loss`` on
the stepped D (lines 257-262) and the lambdas' sum (line 265), with conf/base.yml's lambdas and loss settings
(lines 41-46, 63-69) and its AdamW (lines 27-29). Stood in for: the generator (lines 238-241: its output
``out["audio"]`` is a given tensor and its ``vq/*_loss`` come from dac's own ResidualVectorQuantize on a given
latent, without quantizer dropout: the quantizer's own tests cover it), ``accel`` (no autocast, no scaler: the
plain backward and step) and ``accel.backward(output["loss"])`` (line 268) by ``torch.autograd.grad`` of that
loss, so the gradients compared are exactly it. The discriminator is DAC's ``Discriminator`` at one period
and two FFT sizes (full width: it has no channel option), on 0.25 s at 44.1 kHz.
"""

from __future__ import annotations

import pytest
import torch
from disc_anchors import anchor
from disc_weights import assert_close, dac_unwrap, load_anchor, randomise
from recipe_anchors import (
    assert_same_gradients,
    assert_same_weights,
    dac_stages,
    grads,
    grads_at_step,
    pairs,
    resync,
    snapshot,
    stacked,
)
from vq_anchors import dac_quantize

from distill_core import CombinedLoss, load_config

pytestmark = [
    pytest.mark.slow,  # DAC's discriminator at full width: about 10 s for the module
    # dac's weight_norm and torch.jit.script, deprecated in this torch
    pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

RATE = 44100
PERIODS, FFTS = [7], [512, 256]
LAMBDAS = {  # conf/base.yml lines 41-46
    "mel/loss": 15.0,
    "adv/feat_loss": 2.0,
    "adv/gen_loss": 1.0,
    "vq/commitment_loss": 0.25,
    "vq/codebook_loss": 1.0,
}
MEL = dict(  # conf/base.yml lines 63-69
    n_mels=[5, 10, 20, 40, 80, 160, 320],
    window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
    mel_fmin=[0, 0, 0, 0, 0, 0, 0],
    mel_fmax=[None] * 7,
    pow=1.0,
    clamp_eps=1.0e-5,
    mag_weight=0.0,
)


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The generator's output (a leaf), the target (0.25 s, B = 2, mono) and the encoder's latent [B, 8, T]."""
    g = torch.Generator().manual_seed(seed)
    n = RATE // 4
    fake = (0.3 * torch.randn(2, 1, n, generator=g)).requires_grad_(True)
    real = 0.5 * torch.randn(2, 1, n, generator=g)
    z = torch.randn(2, 8, 6, generator=g).requires_grad_(True)
    return fake, real, z


@pytest.fixture(scope="module")
def step():
    """Both sides' step from the same D weights, inputs and quantizer."""
    disc, dac_loss, signal = anchor("dac.model.discriminator"), anchor("dac.nn.loss"), anchor("audiotools").AudioSignal
    torch.manual_seed(0)
    theirs = disc.Discriminator(rates=[], periods=PERIODS, fft_sizes=FFTS, sample_rate=RATE)
    randomise(theirs, 11)
    config = load_config(
        {
            "recipe": "dac",
            "terms": {  # the recipe's D at these sizes: a term-by-term change
                "adversarial": {
                    "discriminators": [
                        {"kind": "mpd", "options": {"periods": PERIODS, "always_pad": True, "normalize_input": True}},
                        {"kind": "mrd", "options": {"fft_sizes": FFTS, "padding": "dac", "normalize_input": True}},
                    ]
                }
            },
        }
    )
    ours = CombinedLoss(config).train()
    adv = ours.terms["adversarial"].adversarial
    flat = torch.nn.ModuleList([*adv.discriminators[0].discriminators, *adv.discriminators[1].discriminators])
    load_anchor(flat, theirs.discriminators, dac_unwrap)
    matched = pairs(flat, theirs.discriminators, dac_unwrap)

    torch.manual_seed(1)
    rvq = (
        dac_quantize()
        .ResidualVectorQuantize(input_dim=8, n_codebooks=3, codebook_size=16, codebook_dim=4, quantizer_dropout=0.0)
        .train()
    )
    fake, real, z = inputs()
    (_, _, _, commitment_loss, codebook_loss), stages = dac_stages(rvq, z)
    wrt = [fake, z, *rvq.parameters()]

    # --- DAC: train_loop lines 243-265 ---
    optimizer_d = torch.optim.AdamW(theirs.parameters(), lr=1e-4, betas=(0.8, 0.99))
    scheduler_d = torch.optim.lr_scheduler.ExponentialLR(optimizer_d, 0.999996)
    gan_loss, mel_loss = dac_loss.GANLoss(theirs), dac_loss.MelSpectrogramLoss(**MEL)
    recons, sig = signal(fake, RATE), signal(real, RATE)
    output = {}
    output["adv/disc_loss"] = gan_loss.discriminator_loss(recons, sig)
    optimizer_d.zero_grad()
    output["adv/disc_loss"].backward()
    torch.nn.utils.clip_grad_norm_(theirs.parameters(), 10.0)
    d_grads_theirs = {name: p.grad.clone() for name, p in theirs.discriminators.named_parameters()}
    optimizer_d.step()
    scheduler_d.step()
    output["mel/loss"] = mel_loss(recons, sig)
    output["adv/gen_loss"], output["adv/feat_loss"] = gan_loss.generator_loss(recons, sig)
    output["vq/commitment_loss"] = commitment_loss
    output["vq/codebook_loss"] = codebook_loss
    output["loss"] = sum([v * output[k] for k, v in LAMBDAS.items() if k in output])
    expected = grads(output["loss"], wrt)

    # --- the recipe: D's step, then the generator's loss ---
    batch = {"recon": fake, "target": real, **stacked(stages)}
    d_grads_ours = grads_at_step(adv.optimizer, {name: mine for name, mine, _ in matched})
    figures = ours.update(batch)
    weights = snapshot(matched)
    resync(flat, theirs.discriminators, dac_unwrap)
    out = ours(batch)
    got = grads(out["total_loss"], wrt)
    return locals()


def test_d_step_loss_and_gradients_equal_dacs(step):
    assert_close(step["figures"]["adversarial_disc_loss"], step["output"]["adv/disc_loss"].detach(), "D loss")
    assert_same_gradients(step["d_grads_ours"], step["d_grads_theirs"], "dac D")


def test_d_weights_after_the_step_equal_dacs(step):
    assert_same_weights(step["weights"], "dac", {"ours": step["d_grads_ours"], "theirs": step["d_grads_theirs"]})


def test_generator_terms_and_total_equal_dacs(step):
    out, output = step["out"], step["output"]
    assert_close(out["mel_loss"], output["mel/loss"], "mel/loss")
    assert_close(out["adversarial_gen_loss"], output["adv/gen_loss"], "adv/gen_loss")
    assert_close(out["adversarial_feat_loss"], output["adv/feat_loss"], "adv/feat_loss")
    assert_close(out["commitment_loss"], output["vq/commitment_loss"], "vq/commitment_loss")
    assert_close(out["codebook_loss"], output["vq/codebook_loss"], "vq/codebook_loss")
    assert_close(out["total_loss"], output["loss"], "loss")


def test_generator_gradients_equal_dacs(step):
    """w.r.t. the generator's output, the encoder's latent and the quantizer's parameters."""
    names = ["generator output", "latent", *(n for n, _ in step["rvq"].named_parameters())]
    assert all(g.abs().max() > 0 for g in step["expected"][:2]), "DAC's loss has no gradient to compare"
    for name, a, b in zip(names, step["got"], step["expected"]):
        assert_close(a, b, f"d loss / d {name}")  # the last stage's out_proj: 0 on both sides


def test_the_recipe_reads_the_batch_it_declares():
    config = load_config({"recipe": "dac"})
    assert config.batch == {"recon": "B, C, N", "target": "B, C, N", "z_e": "B, Q, D, T", "z_q": "B, Q, D, T"}
    assert {name: config.terms[name].weight for name in config.terms} == {
        "mel": 15.0,
        "adversarial": 1.0,
        "commitment": 0.25,
        "codebook": 1.0,
    }
    adversarial = config.terms["adversarial"]
    assert (adversarial.gen_weight, adversarial.feat_weight, adversarial.grad_clip) == (1.0, 2.0, 10.0)
    assert config.balancer.enabled is False
