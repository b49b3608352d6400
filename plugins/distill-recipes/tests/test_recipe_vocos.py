"""``recipe = "vocos"`` against Vocos's own training step (vocos 0.1.0, vocos/experiment.py ``VocosExp``).

``VocosExp.training_step`` runs as a whole, twice per batch as PyTorch Lightning 1.8 runs it (configs/vocos.yaml
names pytorch_lightning 1.8.6): ``optimizer_idx = 0`` (D, lines 107-126), then D's backward and AdamW step, then
``optimizer_idx = 1`` (the generator, lines 129-188) on the stepped D. The experiment is built by its own
``__init__`` with configs/vocos.yaml's arguments (lines 24-29).

Stood in for, in a subclass: ``forward`` (lines 97-101, the generator: it returns a given tensor, detached under
``no_grad`` as the generator's output would be), ``global_step`` (the trainer's batch counter, lines 281-286: 1,
so GAN training is on, as ``on_train_batch_start`` decides with ``pretrain_mel_steps = 0``, and the audio and image
logging of step 0 is skipped) and ``log`` (Lightning's logger: it records the values, which the test reads).
Lightning's loop itself: ``configure_optimizers``'s AdamW (line 81; its cosine schedule starts at factor 1 with no
warm-up, so the first step's lr is 5e-4), ``loss.backward()`` and the step, written out; the generator's backward
by ``torch.autograd.grad``. The discriminators are Vocos's own classes at two periods and two FFT sizes (the
experiment builds them with their defaults, lines 59-60; here the names it calls are given those sizes while it
is built). On 0.25 s at 24 kHz.
"""

from __future__ import annotations

import functools

import pytest
import torch
from disc_weights import assert_close, load_anchor
from recipe_anchors import (
    assert_same_gradients,
    assert_same_weights,
    grads,
    grads_at_step,
    pairs,
    resync,
    snapshot,
    vocos_experiment,
)

from distill_core import CombinedLoss, load_config

pytestmark = [
    pytest.mark.slow,  # pytorch_lightning's import and Vocos's experiment: about 15 s for the module
    pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

RATE = 24000
PERIODS, FFTS = (2, 3), (512, 256)


def experiment(module, seed: int = 0):
    """VocosExp with configs/vocos.yaml's arguments, its generator, step counter and logger stood in for."""

    class Experiment(module.VocosExp):
        output: torch.Tensor

        def forward(self, audio_input, **kwargs):
            return self.output if torch.is_grad_enabled() else self.output.detach()

        @property
        def global_step(self):
            return 1

        def log(self, name, value, *args, **kwargs):
            self.logged[name] = value

    small = {
        "MultiPeriodDiscriminator": functools.partial(module.MultiPeriodDiscriminator, periods=PERIODS),
        "MultiResolutionDiscriminator": functools.partial(module.MultiResolutionDiscriminator, fft_sizes=FFTS),
    }
    torch.manual_seed(seed)
    with pytest.MonkeyPatch.context() as patch:
        for name, factory in small.items():
            patch.setattr(module, name, factory)
        exp = Experiment(
            feature_extractor=torch.nn.Identity(),
            backbone=torch.nn.Identity(),
            head=torch.nn.Identity(),
            sample_rate=RATE,
            initial_learning_rate=5e-4,
            num_warmup_steps=0,
            mel_loss_coeff=45,
            mrd_loss_coeff=0.1,
            pretrain_mel_steps=0,
        )
    exp.logged = {}
    return exp


@pytest.fixture(scope="module")
def step():
    exp = experiment(vocos_experiment())
    mpd, mrd = exp.multiperioddisc, exp.multiresddisc  # Vocos's own initialisation, seeded below
    config = load_config(
        {
            "recipe": "vocos",
            "terms": {  # the recipe's D at these sizes (the preset fills in the rest of each entry)
                "adversarial": {
                    "discriminators": [
                        {"kind": "mpd", "options": {"periods": list(PERIODS)}},
                        {"kind": "mrd", "options": {"fft_sizes": list(FFTS)}},
                    ]
                }
            },
        }
    )
    ours = CombinedLoss(config).train()
    adv = ours.terms["adversarial"].adversarial
    load_anchor(adv.discriminators[0].discriminators, mpd.discriminators)
    load_anchor(adv.discriminators[1].discriminators, mrd.discriminators)
    matched = [(f"mpd.{n}", a, b) for n, a, b in pairs(adv.discriminators[0].discriminators, mpd.discriminators)] + [
        (f"mrd.{n}", a, b) for n, a, b in pairs(adv.discriminators[1].discriminators, mrd.discriminators)
    ]

    g = torch.Generator().manual_seed(5)
    fake = (0.3 * torch.randn(2, RATE // 4, generator=g)).requires_grad_(True)
    real = 0.5 * torch.randn(2, RATE // 4, generator=g)

    # --- Vocos: one batch of Lightning's loop over training_step ---
    opt_disc = torch.optim.AdamW(
        [{"params": mpd.parameters()}, {"params": mrd.parameters()}], lr=5e-4, betas=(0.8, 0.9)
    )
    exp.output = fake
    exp.on_train_batch_start(real, 0)
    d_loss = exp.training_step(real, 0, optimizer_idx=0)
    opt_disc.zero_grad()
    d_loss.backward()
    d_grads_theirs = {f"mpd.{n}": p.grad.clone() for n, p in mpd.discriminators.named_parameters()}
    d_grads_theirs.update({f"mrd.{n}": p.grad.clone() for n, p in mrd.discriminators.named_parameters()})
    opt_disc.step()
    g_loss = exp.training_step(real, 0, optimizer_idx=1)
    logged = dict(exp.logged)
    (expected,) = grads(g_loss, [fake])

    # --- the recipe ---
    batch = {"recon": fake.unsqueeze(1), "target": real.unsqueeze(1)}
    d_grads_ours = grads_at_step(adv.optimizer, {name: mine for name, mine, _ in matched})
    figures = ours.update(batch)
    weights = snapshot(matched)
    resync(adv.discriminators[0].discriminators, mpd.discriminators)
    resync(adv.discriminators[1].discriminators, mrd.discriminators)
    out = ours(batch)
    (got,) = grads(out["total_loss"], [fake])
    return locals()


def test_d_step_loss_and_gradients_equal_vocos(step):
    assert_close(step["figures"]["adversarial_disc_loss"], step["d_loss"].detach()[0], "discriminator/total")
    # 5e-5 of D's largest gradient: the summation order of a float32 conv's weight gradient varies with the CPU
    # (1.1e-5 seen on an AMX Xeon, under 1e-5 elsewhere)
    assert_same_gradients(step["d_grads_ours"], step["d_grads_theirs"], "vocos D", tol=5e-5)


def test_d_weights_after_the_step_equal_vocos(step):
    assert_same_weights(step["weights"], "vocos", {"ours": step["d_grads_ours"], "theirs": step["d_grads_theirs"]})


def test_generator_terms_and_total_equal_vocos(step):
    out, logged = step["out"], step["logged"]
    assert_close(out["vocos_mel_loss"], logged["generator/mel_loss"].detach(), "generator/mel_loss")
    gen = logged["generator/multi_period_loss"] + 0.1 * logged["generator/multi_res_loss"]
    feat = logged["generator/feature_matching_mp"] + 0.1 * logged["generator/feature_matching_mrd"]
    assert_close(out["adversarial_gen_loss"], gen.detach().reshape(()), "generator/multi_period + 0.1 multi_res")
    assert_close(out["adversarial_feat_loss"], feat.detach().reshape(()), "feature_matching_mp + 0.1 _mrd")
    assert_close(out["total_loss"], step["g_loss"].detach()[0], "generator/total_loss")


def test_generator_gradient_equals_vocos(step):
    assert step["expected"].abs().max() > 0
    assert_close(step["got"], step["expected"], "d generator/total_loss / d audio_hat")


def test_the_recipe_reads_the_batch_it_declares():
    config = load_config({"recipe": "vocos"})
    assert config.batch == {"recon": "B, C, N", "target": "B, C, N"}
    assert config.terms["vocos_mel"].weight == 45.0
    adversarial = config.terms["adversarial"]
    assert (adversarial.gen_weight, adversarial.feat_weight) == (1.0, 1.0)
    assert [(d.kind, d.weight) for d in adversarial.discriminators] == [("mpd", 1.0), ("mrd", 0.1)]
