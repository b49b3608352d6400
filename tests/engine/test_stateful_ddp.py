"""Stateful terms under DDP, with two gloo ranks (half the global batch each) against one process on the whole
batch, after three steps: D's weights and the generator's agree (each rank built its own D: rank 0's reaches
the other); an EMA buffer the update step moves from the batch (declared ``mean``) and a count of examples
(declared ``sum``) stay equal across the ranks and equal one process's; every reported window, the update
step's figures included, is the global one. Without prepare_loss, our loop and a plain loop refuse on every
rank, naming what to call."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.ddp, pytest.mark.slow]

FIGURES = (
    "adversarial_disc_loss",
    "adversarial_real_score",
    "adversarial_fake_score",
    "band_ema_energy",
)


def test_two_ranks_with_half_the_batch_equal_one_process(gloo_runs):
    ref = gloo_runs.alone("stateful_ddp_worker.py")
    assert int(ref["d"]["terms.adversarial.adversarial.updates"]) == 3
    ranks = gloo_runs.two_ranks("stateful_ddp_worker.py")
    for rank in ranks:
        for part in ("d", "g"):
            assert rank[part].keys() == ref[part].keys()
            for name, value in ref[part].items():
                torch.testing.assert_close(rank[part][name], value, rtol=1e-5, atol=1e-5, msg=f"{part} {name}")
        for key, value in ref["means"].items():  # the epoch's figures, all-reduced: the global batch's
            assert rank["means"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # the EMA: reduced (mean over the ranks) after each update step, so bit-equal across the ranks and, with
    # shards of one size, equal to one process on the whole batch to float rounding
    assert torch.equal(ranks[0]["ema"]["energy"], ranks[1]["ema"]["energy"])
    torch.testing.assert_close(ranks[0]["ema"]["energy"], ref["ema"]["energy"], rtol=1e-6, atol=0.0)
    assert not torch.allclose(ref["ema"]["energy"], torch.ones(4))  # it moved
    assert ranks[0]["syncs"] == ranks[1]["syncs"] == {}  # no host sync in loss.update, the reduction included
    assert int(ref["ema"]["seen"]) == int(ranks[0]["ema"]["seen"]) == int(ranks[1]["ema"]["seen"]) == 12
    # every reported window (log_interval=1: one a step) is the global one, the same floats on both ranks
    assert len(ref["windows"]) == len(ranks[0]["windows"]) == 3
    assert ranks[0]["windows"] == ranks[1]["windows"]
    for step, (mine, theirs) in enumerate(zip(ranks[0]["windows"], ref["windows"])):
        assert mine.keys() == theirs.keys()
        for key in FIGURES:  # the update step's figures: the global batch's, not this rank's shard
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), (step, key)
        assert mine["total_loss"] == pytest.approx(theirs["total_loss"], rel=1e-5), step


def test_without_prepare_loss_our_loop_and_a_plain_loop_refuse_naming_what_to_call(gloo_runs):
    expected = (
        "stateful terms 'adversarial', 'band_ema' updated under 2 torch.distributed ranks, but prepare_loss was "
        "not called on this loss: each rank would train its own copy; call "
        "distill_core.training.ddp.prepare_loss(loss) on every rank once after building (and restoring) the "
        "loss, before the first step"
    )
    for rank in gloo_runs.two_ranks("stateful_ddp_worker.py", "--no-prepare"):
        assert rank["refused"] == {"train_pass": expected, "plain": expected}
