"""DDP with two gloo processes on CPU against one process with the full batch."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


def test_ddp_matches_single_process(gloo_runs):
    ref = gloo_runs.alone("ddp_worker.py")
    ranks = gloo_runs.two_ranks("ddp_worker.py")
    for result in ranks:
        assert result["grads"].keys() == ref["grads"].keys()
        for name, grad in ref["grads"].items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-5, atol=1e-7)
    # Epoch metrics: all-reduced once per epoch, identical on both ranks and equal to one process's.
    assert ranks[0]["train"] == ranks[1]["train"] and ranks[0]["val"] == ranks[1]["val"]
    for key in ("total_loss", "mag_recon_loss", "kl_loss"):
        assert ranks[0]["train"][key] == pytest.approx(ref["train"][key], rel=1e-5)
        assert ranks[0]["val"][key] == pytest.approx(ref["val"][key], rel=1e-5)
    assert ranks[0]["val"]["kl_divergence"] == pytest.approx(ref["val"]["kl_divergence"], rel=1e-5)
