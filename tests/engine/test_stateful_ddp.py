"""A stateful term under DDP: two gloo ranks with half the batch each equal one process on the whole batch, in D's
weights and the generator's, after three steps (each rank built its own D: rank 0's reaches the other); with D's
gradients left per rank, the ranks' discriminators drift apart."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


def test_two_ranks_with_half_the_batch_equal_one_process(gloo_runs):
    ref = gloo_runs.alone("stateful_ddp_worker.py")
    assert int(ref["d"]["terms.adversarial.adversarial.updates"]) == 3
    for rank in gloo_runs.two_ranks("stateful_ddp_worker.py"):
        for part in ("d", "g"):
            assert rank[part].keys() == ref[part].keys()
            for name, value in ref[part].items():
                torch.testing.assert_close(rank[part][name], value, rtol=1e-5, atol=1e-5, msg=f"{part} {name}")
        for key, value in ref["means"].items():  # the epoch's figures, all-reduced: the global batch's
            assert rank["means"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_with_d_gradients_left_per_rank_the_discriminators_drift_apart(gloo_runs):
    ranks = gloo_runs.two_ranks("stateful_ddp_worker.py", "--broadcast-only")
    names = [k for k in ranks[0]["d"] if k.endswith("weight.original1")]
    drift = max(float((ranks[0]["d"][k] - ranks[1]["d"][k]).abs().max()) for k in names)
    assert names and drift > 1e-4, drift
