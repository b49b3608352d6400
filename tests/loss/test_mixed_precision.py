"""bfloat16 autocast and half-precision inputs: finite, within 1e-2 of float32, FFTs and logs in float32."""

from __future__ import annotations

import pytest
import torch

from distill_core import CombinedLoss, LossConfig

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def batch(device, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    b = {
        "recon": torch.rand(2, 2, 32, 80, generator=g) + 0.05,
        "target": torch.rand(2, 2, 32, 80, generator=g) + 0.05,
        "mu": torch.randn(2, 8, generator=g),
        "logvar": 0.3 * torch.randn(2, 8, generator=g),
    }
    return {k: v.to(device=device, dtype=dtype) for k, v in b.items()}


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_matches_float32(device):
    loss = CombinedLoss(LossConfig()).to(device)
    reference = loss(batch(device), weights={"kl": 0.01})
    with torch.autocast(device, dtype=torch.bfloat16):
        low = loss(batch(device), weights={"kl": 0.01})
    for key, value in reference.items():
        assert torch.isfinite(low[key]), key
        assert low[key].dtype == torch.float32, key  # computed in float32 under autocast
        assert abs(float(low[key]) - float(value)) <= 1e-2 * max(abs(float(value)), 1e-6), key


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device", DEVICES)
def test_half_inputs_are_upcast(device, dtype):
    loss = CombinedLoss(LossConfig()).to(device)
    reference = loss(batch(device), weights={"kl": 0.01})
    half = batch(device, dtype)
    half["recon"].requires_grad_(True)
    out = loss(half, weights={"kl": 0.01})
    for key, value in reference.items():
        assert out[key].dtype == torch.float32, key
        assert abs(float(out[key]) - float(value)) <= 1e-2 * max(abs(float(value)), 1e-6), key
    out["total_loss"].backward()
    assert half["recon"].grad.dtype == dtype and torch.isfinite(half["recon"].grad.float()).all()
