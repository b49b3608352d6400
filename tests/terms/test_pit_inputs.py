"""PIT on inputs that do not pair up, or that are not finite: the caller's shapes in one BatchError, and a NaN flagged
alike under brute force and the Hungarian assignment (issue 36, item 8); the logged identity share counts whole
assignments (item 15)."""

from __future__ import annotations

import math

import pytest
import torch

from distill_core import CombinedLoss
from distill_core.loss.config import load_config
from distill_core.terms.base import BatchError
from distill_core.terms.pit import identity_share
from distill_core.testing import SYNC_METHODS

METHODS = ("brute", "hungarian")


def pit_loss(method: str, **binding) -> CombinedLoss:
    section = {"pit": {"axis": 1, "method": method}, **binding}
    return CombinedLoss(load_config({"recipe": "none", "terms": {"auraloss_sisdr": section}}))


def mixture(batch: int = 2, sources: int = 3, n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(batch, sources, n, generator=g)
    return target + 0.3 * torch.randn(batch, sources, n, generator=g), target


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "est, ref",
    [((2, 3, 256), (2, 2, 256)), ((2, 2, 256), (2, 3, 256)), ((2, 3, 256), (2, 3, 200))],
    ids=["more estimates", "more references", "lengths differ"],
)
def test_sources_that_do_not_pair_up_quote_the_callers_shapes(method, est, ref):
    with pytest.raises(BatchError) as info:
        pit_loss(method)({"recon": torch.randn(*est), "target": torch.randn(*ref)})
    assert str(info.value) == (
        f"term 'auraloss_sisdr' under pit (axis 1): batch['recon'] has shape {list(est)} and batch['target'] "
        f"{list(ref)}; expected the same shape: as many estimates as references along axis 1, each as long"
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_estimate_is_flagged_alike_by_both_methods(bad):
    est, target = mixture()
    est[0, 1, 17] = bad
    outs = {method: pit_loss(method)({"recon": est, "target": target}) for method in METHODS}
    for method, out in outs.items():
        assert not torch.isfinite(out["auraloss_sisdr_loss"]), method
        assert float(out["nonfinite"]) == 1.0, method
    # the example that is finite gets the same assignment and value either way
    brute, hungarian = (pit_loss(m) for m in METHODS)
    clean = {"recon": est[1:], "target": target[1:]}
    assert torch.allclose(brute(clean)["total_loss"], hungarian(clean)["total_loss"], rtol=1e-6)


def test_a_nan_in_one_example_leaves_the_others_assignment_alone():
    est, target = mixture(batch=3)
    est[1] = est[1].flip(0)  # example 1's sources reversed: PIT must find (2, 1, 0)
    est[0, 2, 5] = math.nan
    loss = pit_loss("hungarian")
    loss({"recon": est, "target": target})
    assert loss.permutations["auraloss_sisdr"][1].tolist() == [2, 1, 0]
    assert loss.permutations["auraloss_sisdr"][2].tolist() == [0, 1, 2]


def test_hungarian_with_a_nan_still_syncs_once(sync_counter):
    est, target = mixture()
    est[0, 0, 0] = math.nan
    pit_loss("hungarian")({"recon": est, "target": target})
    assert sync_counter["cpu"] == 1
    assert sum(v for k, v in sync_counter.items() if k not in ("cpu", "numpy")) == 0
    assert set(sync_counter) == set(SYNC_METHODS)


def test_brute_force_shape_check_adds_no_sync(sync_counter):
    est, target = mixture()
    pit_loss("brute")({"recon": est, "target": target})
    assert sync_counter == {m: 0 for m in SYNC_METHODS}


def test_identity_share_counts_only_whole_identity_assignments():
    swapped = torch.tensor([[0, 2, 1]])  # three sources, 1 and 2 swapped: source 0 in place is not enough
    assert float(identity_share(swapped)) == 0.0
    assert float(identity_share(torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [0, 1, 2]]))) == 0.5


@pytest.mark.parametrize("method", METHODS)
def test_the_logged_identity_share_with_three_sources_and_one_pair_swapped_is_zero(method):
    est, target = mixture(batch=2)
    est = est[:, [0, 2, 1]]  # every example's estimates 1 and 2 swapped
    out = pit_loss(method)({"recon": est, "target": target})
    assert float(out["auraloss_sisdr_pit_identity"]) == 0.0
    in_order = pit_loss(method)({"recon": est[:, [0, 2, 1]], "target": target})
    assert float(in_order["auraloss_sisdr_pit_identity"]) == 1.0
