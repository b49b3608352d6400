"""NaN and Inf inputs: the total falls back, the non-finite counter increments, training goes on, no host sync."""

from __future__ import annotations

import math

import pytest
import torch

from distill_core import CombinedLoss, LossConfig
from distill_core.training.loop import train_epoch


def batch(**override):
    g = torch.Generator().manual_seed(0)
    b = {
        "recon": torch.rand(2, 2, 32, 80, generator=g),
        "target": torch.rand(2, 2, 32, 80, generator=g),
        "mu": torch.randn(2, 8, generator=g),
        "logvar": torch.randn(2, 8, generator=g),
    }
    b.update(override)
    return b


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_latent_falls_back_to_recon(bad):
    loss = CombinedLoss(LossConfig())
    mu = torch.randn(2, 8)
    mu[0, 3] = bad
    out = loss(batch(mu=mu), weights={"kl": 0.01})
    assert not torch.isfinite(out["kl_loss"])
    torch.testing.assert_close(out["total_loss"], out["recon_loss"])
    assert float(out["nonfinite"]) == 1.0


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.enc = torch.nn.Linear(2 * 32 * 80, 8)

    def forward(self, x):
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=-1)
        return x.clamp(min=0) * self.scale, mu, logvar


def test_training_goes_on_through_a_nan_batch_without_per_step_syncs(sync_counter):
    torch.manual_seed(0)
    good = torch.rand(2, 2, 32, 80)
    poisoned = good.clone()
    poisoned[0, 0, 0, 0] = math.nan
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, fused=True)  # skips bad steps on the device
    counted = dict(sync_counter)
    means = train_epoch(
        model, [good, poisoned, good, poisoned, good], opt, loss_config=LossConfig(), epoch=1, total_epochs=4
    )
    counts = {m: sync_counter[m] - counted[m] for m in sync_counter}
    assert means["nonfinite"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # One sync for the whole epoch: the accumulated sums become floats once, at the end.
    assert counts == {**{m: 0 for m in counts}, "tolist": 1}
