"""A balanced DDP step (two gloo processes, half the batch each) equals one process over the full batch."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


@pytest.mark.parametrize("per_item", ["true", "false"])
def test_balanced_ddp_matches_single_process(gloo_runs, per_item):
    ref = gloo_runs.alone("balancer_ddp_worker.py", "--per-item", per_item)
    ranks = gloo_runs.two_ranks("balancer_ddp_worker.py", "--per-item", per_item)
    for result in ranks:
        for step, (ours, theirs) in enumerate(zip(result["grads"], ref["grads"], strict=True)):
            for name, grad in theirs.items():
                torch.testing.assert_close(ours[name], grad, rtol=1e-5, atol=1e-7, msg=f"step {step} {name}")
        # every rank keeps the single process's average (so a checkpoint from any rank resumes the same run)
        for key, buffer in ref["balancer"].items():
            torch.testing.assert_close(result["balancer"][key], buffer, rtol=1e-6, atol=0)
        for key, value in ref["logs"][-1].items():
            torch.testing.assert_close(result["logs"][-1][key], value, rtol=1e-5, atol=1e-7, msg=key)
    assert ref["logs"][0]["ratio_mse"] == pytest.approx(0.5, abs=1e-6)
    # mse was NaN on one rank only at the last step: every rank dropped it, as the single process did
    assert float(ref["logs"][-1]["nonfinite"]) == 1.0
    assert [float(r["logs"][-1]["nonfinite"]) for r in ranks] == [1.0, 1.0]
    assert float(ranks[0]["logs"][-1]["ratio_mse"]) == 0.0
