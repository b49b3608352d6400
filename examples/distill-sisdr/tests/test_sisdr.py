import math

import pytest
import torch
from distill_sisdr import SISDRConfig, SISDRLoss

from distill_core import BatchError
from distill_core.testing import check_term


def waves(dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 1, 400, generator=g, dtype=dtype)
    recon = target + 0.3 * torch.randn(3, 1, 400, generator=g, dtype=dtype)
    return {"recon": recon.to(device), "target": target.to(device)}


def reference(recon, target):
    total = 0.0
    for r, t in zip(recon.reshape(-1, recon.shape[-1]).tolist(), target.reshape(-1, target.shape[-1]).tolist()):
        mr, mt = sum(r) / len(r), sum(t) / len(t)
        r = [x - mr for x in r]
        t = [x - mt for x in t]
        alpha = sum(a * b for a, b in zip(r, t)) / sum(b * b for b in t)
        s = [alpha * b for b in t]
        e = [a - b for a, b in zip(r, s)]
        total += 10 * math.log10(sum(x * x for x in s) / sum(x * x for x in e))
    return -total / recon.shape[0] / recon.shape[1]


def test_value_against_reference():
    b = waves(torch.float64)
    assert float(SISDRLoss(SISDRConfig())(b)) == pytest.approx(reference(b["recon"], b["target"]), rel=1e-6)


def test_scale_invariance():
    b = waves()
    scaled = {**b, "recon": b["recon"] * 7.5}
    torch.testing.assert_close(SISDRLoss(SISDRConfig())(b), SISDRLoss(SISDRConfig())(scaled), rtol=1e-4, atol=1e-4)


def test_conformance():
    check_term(SISDRLoss, waves)


def test_bad_shape():
    with pytest.raises(BatchError, match=r"sisdr: batch\['recon'\] expected shape \[B, C, N\]"):
        SISDRLoss(SISDRConfig())({"recon": torch.randn(3, 400), "target": torch.randn(3, 400)})
