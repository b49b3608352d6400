"""CombinedLoss.end_epoch runs each stateful term's per-epoch step in training mode only, as documented: a
validation pass (eval mode) never steps a term's schedule (issue 36, item 14)."""

from __future__ import annotations

import attrs
import pytest
import torch

from distill_core import CombinedLoss, LossTerm, Weight, load_config


@attrs.define
class ScheduledConfig:
    weight: Weight = 1.0


class Scheduled(LossTerm):
    """A stateful term whose own per-epoch step counts how often it ran."""

    name = "scheduled"
    config_class = ScheduledConfig
    requires = ("recon", "target")

    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("epochs", torch.zeros((), dtype=torch.int64))

    def forward(self, batch):
        return (batch["recon"] - batch["target"]).abs().mean()

    def update(self, batch):
        return None

    def end_epoch(self):
        self.epochs += 1


@pytest.fixture
def loss(register_term):
    register_term(Scheduled)
    return CombinedLoss(load_config({"recipe": "none", "terms": {"scheduled": {}}}))


def test_end_epoch_steps_the_term_in_training_mode(loss):
    loss.train()
    loss.end_epoch()
    loss.end_epoch()
    assert int(loss.terms["scheduled"].epochs) == 2


def test_end_epoch_does_nothing_in_eval_mode(loss):
    loss.eval()
    loss.end_epoch()
    assert int(loss.terms["scheduled"].epochs) == 0
    loss.train()
    loss.end_epoch()
    loss.eval()
    loss.end_epoch()
    assert int(loss.terms["scheduled"].epochs) == 1
