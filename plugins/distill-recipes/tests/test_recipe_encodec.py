"""``recipe = "encodec"`` against audiocraft's compression solver (audiocraft 1.3.0, solvers/compression.py
``CompressionSolver.run_step``, lines 83-155), run piece by piece in its order with audiocraft's own classes.

The solver itself needs the whole framework (dora, flashy, hydra configs, datasets), so its pieces are built as
its ``__init__`` and solvers/builders.py build them from config/solver/compression/default.yaml: MS-STFTD and
``AdversarialLoss`` (hinge, L1 feature matching normalised, Adam(3e-4, (0.5, 0.9))), ``torch.nn.L1Loss`` and
``MultiScaleMelSpectrogramLoss`` (the ``msspec`` section, 24 kHz) as the balanced losses with weights adv 4, feat
4, l1 0.1, msspec 2, and ``Balancer`` (the ``balancer`` section, ``monitor=True`` to read its averaged norms).
Then run_step's lines: ``train_adv`` (line 98), the quantizer's penalty (107-108), ``adversary(y_pred, y)`` on the
stepped D (112-114), the auxiliary losses (117-119), ``other_loss.backward(retain_graph=True)`` (128-132) and
``self.balancer.backward(balanced_losses, y_pred)`` (140).

Stood in for: the model (line 88: ``y_pred`` is a given tensor; the penalty is audiocraft's own
ResidualVectorQuantizer in training mode, k-means init and EMA codebooks as the config has them, on a given
latent); ``builders.get_balancer`` / ``get_adversarial_losses`` / ``get_optimizer`` (their constructor calls,
written with the config's values); flashy's helpers (recipe_anchors says which). MS-STFTD at ``filters = 4`` with
three scales and audiocraft's own initialisation (seeded), on 0.25 s at 24 kHz. The gradients compared are those
run_step leaves in ``.grad``: at ``y_pred`` (the balanced gradient) and at the latent (the penalty's).

D's gradients: float32 rounding alone separates the two sides by up to about 4e-5 of D's largest gradient entry
(the STFT's and the strided convolutions' sums, whose terms are far larger than their result: the same step in
float64 agrees to 1e-14 when the two sides' losses are summed alike). They are compared to 1e-4 in float32, and
to 1e-7 in float64 (D's step alone), where audiocraft's float32 accumulator is the limit: ``train_adv`` sums into
``torch.tensor(0.)`` and divides it by 3 in float32, so every gradient carries float32's 1/3 (3e-8 off).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from disc_weights import assert_close, audiocraft_unwrap, load_anchor
from distill_discriminators import Adversarial
from recipe_anchors import (
    assert_same_gradients,
    assert_same_weights,
    audiocraft_solver_pieces,
    audiocraft_stages,
    grads_at_step,
    pairs,
    resync,
    snapshot,
    stacked,
)

from distill_core import CombinedLoss, LossConfig, load_config

pytestmark = [
    pytest.mark.slow,  # audiocraft's solver pieces, three D steps: about 10 s for the module
    pytest.mark.filterwarnings("ignore::UserWarning"),  # torchaudio's empty-filter warning
]

RATE = 24000
WEIGHTS = {"adv_msstftd": 4.0, "feat_msstftd": 4.0, "l1": 0.1, "msspec": 2.0}  # default.yaml lines 13-19
MSSPEC = dict(  # default.yaml lines 52-61
    sample_rate=RATE, range_start=6, range_end=11, n_mels=64, f_min=64, f_max=None, normalized=True, alphas=False
)
MSSTFTD = dict(filters=4, n_ffts=[256, 512, 128], hop_lengths=[64, 128, 32], win_lengths=[256, 400, 128])


def recipe() -> LossConfig:
    """The recipe with its D at the test's sizes: a term-by-term change."""
    msstftd = {
        "kind": "msstftd",
        "reduce": "mean",
        "feat_reduce": "mean",
        "options": {**MSSTFTD, "negative_slope": 0.3},
    }
    return load_config({"recipe": "encodec", "terms": {"adversarial": {"discriminators": [msstftd]}}})


def audiocraft_adversary(p: Any) -> tuple[Any, Any]:
    """MS-STFTD and its AdversarialLoss as builders.get_adversarial_losses makes them from default.yaml."""
    torch.manual_seed(0)
    adversary = p.msstftd.MultiScaleSTFTDiscriminator(**MSSTFTD, activation_params={"negative_slope": 0.3})
    adv_loss = p.adversarial.AdversarialLoss(
        adversary,
        torch.optim.Adam(adversary.parameters(), lr=3e-4, betas=(0.5, 0.9), weight_decay=0.0),
        loss=p.adversarial.get_adv_criterion("hinge"),
        loss_real=p.adversarial.get_real_criterion("hinge"),
        loss_fake=p.adversarial.get_fake_criterion("hinge"),
        loss_feat=p.adversarial.FeatureMatchingLoss(torch.nn.L1Loss(), normalize=True),
        normalize=True,
    )
    return adversary, adv_loss


def run_steps(steps: int) -> list[dict]:
    """``steps`` solver steps on both sides, each on new inputs: what each side computed at each."""
    p = audiocraft_solver_pieces()
    torch.manual_seed(0)
    adversary, adv_loss = audiocraft_adversary(p)
    aux = {"l1": torch.nn.L1Loss(), "msspec": p.specloss.MultiScaleMelSpectrogramLoss(**MSSPEC, floor_level=1e-5)}
    balancer = p.balancer.Balancer(
        WEIGHTS, balance_grads=True, ema_decay=0.999, per_batch_item=True, total_norm=1.0, monitor=True
    )
    torch.manual_seed(1)
    quantizer = p.vq.ResidualVectorQuantizer(dimension=8, n_q=3, bins=16, kmeans_iters=50).train()

    ours = CombinedLoss(recipe()).train()
    adv = ours.terms["adversarial"].adversarial
    load_anchor(adv.discriminators[0].discriminators, adversary.discriminators, audiocraft_unwrap)
    matched = pairs(adv.discriminators[0].discriminators, adversary.discriminators, audiocraft_unwrap)

    results = []
    for step in range(steps):
        g = torch.Generator().manual_seed(40 + step)
        y_pred = (0.3 * torch.randn(2, 1, RATE // 4, generator=g)).requires_grad_(True)
        y = 0.5 * torch.randn(2, 1, RATE // 4, generator=g)
        z = torch.randn(2, 8, 10, generator=g).requires_grad_(True)
        qres, stages = audiocraft_stages(quantizer, z, frame_rate=50)

        # --- audiocraft: run_step lines 96-140 ---
        d_grads_theirs = grads_at_step(adv_loss.optimizer, dict(adversary.discriminators.named_parameters()))
        d_loss = adv_loss.train_adv(y_pred, y)
        balanced_losses, other_losses = {}, {}
        if qres.penalty is not None and qres.penalty.requires_grad:
            other_losses["penalty"] = qres.penalty
        balanced_losses["adv_msstftd"], balanced_losses["feat_msstftd"] = adv_loss(y_pred, y)
        for name, criterion in aux.items():
            balanced_losses[name] = criterion(y_pred, y)
        other_loss = torch.tensor(0.0)
        if "penalty" in other_losses:
            other_loss += other_losses["penalty"]
        other_loss.backward(retain_graph=True)
        balancer.backward(balanced_losses, y_pred)
        expected = {"y_pred": y_pred.grad.clone(), "z": z.grad.clone(), "ratios": dict(balancer.metrics)}
        y_pred.grad, z.grad = None, None

        # --- the recipe: D's step, the loss, its backward ---
        batch = {"recon": y_pred, "target": y, **stacked(stages, channels_last=True)}
        d_grads_ours = grads_at_step(adv.optimizer, {name: mine for name, mine, _ in matched})
        figures = ours.update(batch)
        if step == 0:  # both D steps moved D alike (later steps carry the first's rounding-decided moves)
            assert_same_weights(snapshot(matched), "encodec", {"ours": d_grads_ours, "theirs": d_grads_theirs})
        resync(adv.discriminators[0].discriminators, adversary.discriminators, audiocraft_unwrap)
        out = ours(batch)
        logs = ours.backward(out)
        got = {"y_pred": y_pred.grad.clone(), "z": z.grad.clone(), "logs": logs}
        results.append(
            dict(
                d_loss=d_loss.detach(),
                figures=figures,
                d_grads_theirs=d_grads_theirs,
                d_grads_ours=d_grads_ours,
                balanced=balanced_losses,
                penalty=qres.penalty,
                out=out,
                expected=expected,
                got=got,
            )
        )
    return results


@pytest.fixture(scope="module")
def step():
    return run_steps(1)[0]


def test_d_step_loss_and_gradients_equal_audiocrafts(step):
    assert_close(step["figures"]["adversarial_disc_loss"], step["d_loss"], "d_msstftd")
    assert_same_gradients(step["d_grads_ours"], step["d_grads_theirs"], "encodec D", tol=1e-4)  # float32: see above


def test_d_step_in_float64_equals_audiocrafts():
    """D's step alone in float64: ``train_adv`` against the recipe's Adversarial: loss, gradients and weights, to
    1e-7 (audiocraft's float32 accumulator: its loss and its 1 / 3 are float32-rounded)."""
    p = audiocraft_solver_pieces()
    adversary, adv_loss = audiocraft_adversary(p)
    adversary.double()
    adv = Adversarial(recipe().terms["adversarial"]).double()
    load_anchor(adv.discriminators[0].discriminators, adversary.discriminators, audiocraft_unwrap)
    matched = pairs(adv.discriminators[0].discriminators, adversary.discriminators, audiocraft_unwrap)
    g = torch.Generator().manual_seed(7)
    fake = 0.3 * torch.randn(2, 1, RATE // 4, generator=g, dtype=torch.float64)
    real = 0.5 * torch.randn(2, 1, RATE // 4, generator=g, dtype=torch.float64)
    theirs = grads_at_step(adv_loss.optimizer, dict(adversary.discriminators.named_parameters()))
    mine = grads_at_step(adv.optimizer, {name: m for name, m, _ in matched})
    d_loss = adv_loss.train_adv(fake, real)
    figures = adv.update(fake, real)
    assert_close(figures["disc_loss"], d_loss.double(), "d_msstftd", 1e-7)
    assert_same_gradients(mine, theirs, "encodec D, float64", tol=1e-7)
    assert_same_weights(snapshot(matched), "encodec D, float64", {"ours": mine, "theirs": theirs}, tol=1e-7)


def test_generator_terms_equal_audiocrafts(step):
    out, theirs = step["out"], step["balanced"]
    assert_close(out["adversarial_gen_loss"], theirs["adv_msstftd"].detach(), "adv_msstftd")
    assert_close(out["adversarial_feat_loss"], theirs["feat_msstftd"].detach(), "feat_msstftd")
    assert_close(out["wave_l1_loss"], theirs["l1"].detach(), "l1")
    assert_close(out["audiocraft_msspec_loss"], theirs["msspec"].detach(), "msspec")
    assert_close(out["commitment_loss"], step["penalty"].detach(), "penalty")


def test_balanced_gradient_and_penalty_gradient_equal_audiocrafts(step):
    """The balancer's gradient at the model output, and the penalty's at the latent (outside the balancer)."""
    for key in ("y_pred", "z"):
        assert step["expected"][key].abs().max() > 0, key
        assert_close(step["got"][key], step["expected"][key], f"{key}.grad")


def test_averaged_norms_equal_audiocrafts_monitor(step):
    """audiocraft's ``ratio_<loss>`` (monitor): each averaged norm over their sum."""
    names = {
        "adv_msstftd": "adversarial_gen",
        "feat_msstftd": "adversarial_feat",
        "l1": "wave_l1",
        "msspec": "audiocraft_msspec",
    }
    logs = step["got"]["logs"]
    total = sum(logs[f"ema_norm_{c}"] for c in names.values())
    for theirs, ours in names.items():
        assert_close(
            logs[f"ema_norm_{ours}"] / total, torch.as_tensor(step["expected"]["ratios"][f"ratio_{theirs}"]), theirs
        )


def test_two_steps_equal_audiocrafts():
    """The second step's balanced gradient: the averaged norms carry over (flashy's own averager)."""
    if not audiocraft_solver_pieces().real_averager:
        pytest.skip(
            "flashy is not in the anchors' folder (add flashy==0.0.2 to `make anchors`): its averager runs one step only"
        )
    second = run_steps(2)[1]
    assert_close(second["got"]["y_pred"], second["expected"]["y_pred"], "y_pred.grad, step 2")
    assert_close(second["figures"]["adversarial_disc_loss"], second["d_loss"], "d_msstftd, step 2")


def test_the_recipe_balances_what_audiocraft_balances():
    config = load_config({"recipe": "encodec"})
    b = config.balancer
    assert (b.enabled, b.input, b.total_norm, b.ema_decay, b.per_batch_item, b.epsilon) == (
        True,
        "recon",
        1.0,
        0.999,
        True,
        1e-12,
    )
    loss = CombinedLoss(config)
    assert loss.balancer is not None
    assert loss.balancer.terms == ["adversarial_gen", "adversarial_feat", "wave_l1", "audiocraft_msspec"]
    weights = loss.effective_weights(loss.weights())
    assert {c: weights[c] for c in loss.balancer.terms} == {
        "adversarial_gen": 4.0,
        "adversarial_feat": 4.0,
        "wave_l1": 0.1,
        "audiocraft_msspec": 2.0,
    }
    assert weights["commitment"] == 1.0  # outside the balancer: it reads z_e and z_q, not recon


def test_a_file_changes_the_recipes_balancer_key_by_key():
    config = load_config({"recipe": "encodec", "balancer": {"ema_decay": 0.9}})
    assert (config.balancer.enabled, config.balancer.ema_decay, config.balancer.total_norm) == (True, 0.9, 1.0)
    assert load_config({"recipe": "encodec", "balancer": {"enabled": False}}).balancer.enabled is False
    assert load_config({"recipe": "none", "terms": {"wave_l1": {}}}).balancer.enabled is False
