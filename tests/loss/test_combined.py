"""CombinedLoss: weights, groups, schedules, zero weights, fallback, missing keys and no host sync."""

from __future__ import annotations

import math

import pytest
import torch

from distill_core import BatchError, CombinedLoss, ConfigError, GroupConfig, LinearWarmup, LossConfig
from distill_core.terms.base import LossTerm
from distill_core.testing import SYNC_METHODS  # sync_counter, the fixture, is the test kit's


def cfg(fakes, **weights):
    return {name: fakes[name].config_class(weight=w) for name, w in weights.items()}


def test_weighted_sum_and_components(fakes, small_batch):
    loss = CombinedLoss(LossConfig.of(cfg(fakes, fake_l1=0.5, fake_sq=2.0)))
    out = loss(small_batch)
    l1 = (small_batch["recon"] - small_batch["target"]).abs().mean()
    sq = (small_batch["recon"] - small_batch["target"]).pow(2).mean()
    assert set(out) == {"fake_l1_loss", "fake_sq_loss", "total_loss", "nonfinite"}
    assert all(v.dim() == 0 for v in out.values())
    torch.testing.assert_close(out["fake_l1_loss"], l1)
    torch.testing.assert_close(out["total_loss"], 0.5 * l1 + 2.0 * sq)
    out["total_loss"].backward()
    assert small_batch["recon"].grad is not None


def test_groups_sum_under_their_key(fakes, small_batch):
    terms = cfg(fakes, fake_l1=1.0, fake_sq=3.0, fake_norm=0.1)
    groups = {"rec": GroupConfig(weight=0.5, members=("fake_l1", "fake_sq"), key="rec_total")}
    out = CombinedLoss(LossConfig.of(terms, groups))(small_batch)
    rec = 0.5 * (out["fake_l1_loss"] + 3.0 * out["fake_sq_loss"])
    torch.testing.assert_close(out["rec_total"], rec)
    torch.testing.assert_close(out["total_loss"], rec + 0.1 * out["fake_norm_loss"])


def test_schedule_weight_per_epoch_and_override(fakes, small_batch):
    terms = {"fake_l1": fakes["fake_l1"].config_class(weight=LinearWarmup(max=2.0, warmup_fraction=0.5))}
    loss = CombinedLoss(LossConfig.of(terms))
    l1 = loss(small_batch)["fake_l1_loss"]
    assert float(loss(small_batch, epoch=0, total_epochs=10)["total_loss"]) == 0.0
    torch.testing.assert_close(loss(small_batch, epoch=2, total_epochs=10)["total_loss"], 0.8 * l1)
    torch.testing.assert_close(loss(small_batch, epoch=9, total_epochs=10)["total_loss"], 2.0 * l1)
    torch.testing.assert_close(loss(small_batch, weights={"fake_l1": 0.25})["total_loss"], 0.25 * l1)
    with pytest.raises(KeyError, match="no such term or group"):
        loss(small_batch, weights={"nope": 1.0})


class InfTerm(LossTerm):
    name = "always_inf"
    requires = ("recon",)

    def forward(self, batch):
        return batch["recon"].sum() * math.inf


def test_zero_weight_adds_exactly_zero_even_to_inf(fakes, register_term, small_batch):
    import attrs

    InfTerm.config_class = attrs.make_class("InfConfig", {"weight": attrs.field(default=0.0)})
    register_term(InfTerm)
    terms = {**cfg(fakes, fake_l1=1.0), "always_inf": InfTerm.config_class(weight=0.0)}
    out = CombinedLoss(LossConfig.of(terms))(small_batch)
    assert torch.isinf(out["always_inf_loss"])
    torch.testing.assert_close(out["total_loss"], out["fake_l1_loss"])
    assert float(out["nonfinite"]) == 0.0


def test_nonfinite_total_falls_back_to_the_group(fakes, small_batch):
    terms = cfg(fakes, fake_l1=1.0, fake_norm=1.0)
    groups = {"rec": GroupConfig(weight=0.5, members=("fake_l1",))}
    loss = CombinedLoss(LossConfig.of(terms, groups, fallback="rec"))
    batch = {**small_batch, "z": torch.full((3, 4), math.inf)}
    out = loss(batch)
    torch.testing.assert_close(out["total_loss"], out["rec_loss"])
    assert float(out["nonfinite"]) == 1.0
    out["total_loss"].backward()
    assert torch.isfinite(small_batch["recon"].grad).all()


def test_missing_batch_key_fails_before_any_compute(fakes, small_batch, monkeypatch):
    calls = []
    monkeypatch.setattr(fakes["fake_l1"], "forward", lambda self, b: calls.append(1) or b["recon"].sum())
    loss = CombinedLoss(LossConfig.of(cfg(fakes, fake_l1=1.0, fake_norm=1.0)))
    batch = {k: v for k, v in small_batch.items() if k != "z"}
    with pytest.raises(BatchError, match=r"term 'fake_norm' requires batch key 'z'.*the batch has: recon, target"):
        loss(batch)
    assert calls == []


def test_build_validates_the_config(fakes):
    groups = {"rec": GroupConfig(members=("fake_l1", "ghost"))}
    with pytest.raises(ConfigError, match="member 'ghost' is not a configured term"):
        CombinedLoss(LossConfig.of(cfg(fakes, fake_l1=1.0), groups))
    with pytest.raises(ConfigError, match=r"terms.fake_l1.weight: expected a finite weight >= 0, got -2.0"):
        CombinedLoss(LossConfig.of(cfg(fakes, fake_l1=-2.0)))
    with pytest.raises(ConfigError, match="output key 'fake_l1_loss' is produced twice"):
        CombinedLoss(LossConfig.of(cfg(fakes, fake_l1=1.0), {"fake_l1": GroupConfig(members=())}))


def test_term_constructor_failure_names_the_term(fakes, register_term, monkeypatch):
    def broken_init(self, config):
        raise RuntimeError("no filterbank for you")

    monkeypatch.setattr(fakes["fake_sq"], "__init__", broken_init)
    with pytest.raises(
        Exception, match=r"term 'fake_sq' from <in-process> failed to build: RuntimeError: no filterbank"
    ):
        CombinedLoss(LossConfig.of(cfg(fakes, fake_sq=1.0)))
    CombinedLoss(LossConfig.of(cfg(fakes, fake_l1=1.0)))  # configs that do not use it still build


def test_forward_never_syncs_host_and_device(fakes, small_batch, sync_counter):
    groups = {"rec": GroupConfig(weight=0.5, members=("fake_l1",))}
    loss = CombinedLoss(LossConfig.of(cfg(fakes, fake_l1=1.0, fake_sq=0.0, fake_norm=2.0), groups, fallback="rec"))
    out = loss(small_batch, epoch=3, total_epochs=10)
    out["total_loss"].backward()
    assert sync_counter == {m: 0 for m in SYNC_METHODS}
    # the counter itself works:
    float(out["total_loss"])
    assert sync_counter["__float__"] == 1
