"""A non-finite step is skipped: parameters and optimizer state stay bit-identical, fused without a sync."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from distill_core import LossConfig
from distill_core.training.loop import train_epoch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.enc = torch.nn.Linear(2 * 16 * 40, 8)

    def forward(self, x):
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=-1)
        return x.clamp(min=0) * self.scale, mu, logvar


CONFIG = LossConfig()
STFT = CONFIG.terms["stft"]
STFT.fft_sizes, STFT.hop_sizes, STFT.win_lengths = (256,), (64,), (256,)

OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adam fused": lambda p: torch.optim.Adam(p, lr=1e-2, fused=True),
    "sgd momentum": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, weight_decay=1e-3),
    "sgd momentum fused": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, weight_decay=1e-3, fused=True),
}


def state(model, optimizer):
    return copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())


def assert_identical(a, b):
    (pa, oa), (pb, ob) = a, b
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    for key, sa in oa["state"].items():
        for name, value in sa.items():
            other = ob["state"][key][name]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, name


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_nonfinite_step_leaves_parameters_and_optimizer_state_untouched(name, sync_counter):
    torch.manual_seed(0)
    good = torch.rand(2, 2, 16, 40)
    poisoned = good.clone()
    poisoned[0, 0, 0, 0] = math.nan
    model = Tiny()
    optimizer = OPTIMIZERS[name](model.parameters())
    train_epoch(model, [good, good], optimizer, loss_config=CONFIG, epoch=1, total_epochs=4)  # momentum exists
    before = state(model, optimizer)
    counted = dict(sync_counter)
    means = train_epoch(model, [poisoned, poisoned, poisoned], optimizer, loss_config=CONFIG, epoch=1, total_epochs=4)
    counts = {m: sync_counter[m] - counted[m] for m in sync_counter}
    assert means["nonfinite"] == 3
    assert_identical(state(model, optimizer), before)
    # Fused optimizers take the flag on the device; others pay the documented one sync per step.
    expected = 0 if "fused" in name else 3
    assert counts["item"] == expected and counts["tolist"] == 1  # tolist: the epoch's means, once
    train_epoch(model, [good], optimizer, loss_config=CONFIG, epoch=1, total_epochs=4)
    assert not torch.equal(model.state_dict()["enc.weight"], before[0]["enc.weight"])  # a good step still moves
