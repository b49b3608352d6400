"""The loss plan: built once from a config and the registry, read by the check, the loss and its weights."""

from __future__ import annotations

import pytest
import torch

from distill_core import CombinedLoss, GroupConfig, LossConfig, load_config
from distill_core.loss import checks
from distill_core.loss.plan import LossPlan


def cfg(fakes, **weights):
    return {name: fakes[name].config_class(weight=w) for name, w in weights.items()}


@pytest.fixture
def count_checks(monkeypatch):
    calls = []
    real = checks._plan_problems

    def counted(config, registry):
        calls.append(config)
        return real(config, registry)

    monkeypatch.setattr(checks, "_plan_problems", counted)
    checks._LAST.plan = None  # nothing remembered from earlier tests
    return calls


def test_loading_a_config_and_building_its_loss_checks_it_once(count_checks):
    config = load_config({})
    loss = CombinedLoss(config)
    assert len(count_checks) == 1
    assert isinstance(loss.plan, LossPlan) and loss.plan.config is config


def test_a_config_changed_after_loading_is_checked_again(count_checks):
    config = load_config({})
    config.terms["kl"].weight = -1.0  # the change is seen: no stale check lets it through
    with pytest.raises(ValueError, match=r"terms\.kl\.weight: expected a finite weight >= 0, got -1\.0"):
        CombinedLoss(config)
    assert len(count_checks) == 2


def test_effective_weights_are_what_the_total_sums(fakes, small_batch):
    """The one product (term x member x group) gives the total the forward computes."""
    terms = cfg(fakes, fake_l1=0.7, fake_sq=3.0, fake_norm=0.1)
    groups = {"rec": GroupConfig(weight=0.5, members={"fake_l1": 2.0, "fake_sq": 1.0}, key="rec_total")}
    loss = CombinedLoss(LossConfig.of(terms, groups))
    out = loss(small_batch)
    eff = loss.effective_weights(loss.weights())
    assert eff == pytest.approx({"fake_l1": 0.7 * 2.0 * 0.5, "fake_sq": 3.0 * 0.5, "fake_norm": 0.1})
    expected = sum(eff[c] * out[f"{c}_loss"] for c in loss.components)
    torch.testing.assert_close(out["total_loss"], expected)
    assert loss.plan.term_keys == ("fake_l1_loss", "fake_sq_loss", "fake_norm_loss")
    assert loss.plan.forward_keys() >= {"rec_total", "total_loss", "nonfinite", "fake_norm_loss"}


def test_loss_config_with_terms_of_its_own_takes_no_recipe_group_that_names_others(fakes, small_batch):
    config = LossConfig(terms=cfg(fakes, fake_l1=1.0))
    assert config.groups == {} and config.fallback is None and config.batch == {}
    out = CombinedLoss(config)(small_batch)  # builds: no group names a term it lacks
    torch.testing.assert_close(out["total_loss"], out["fake_l1_loss"])
    assert LossConfig(terms={}).groups == {}


def test_loss_config_keeps_the_recipe_groups_when_their_terms_are_there():
    default = LossConfig()
    assert default.groups and default.fallback is not None and default.batch
    extended = LossConfig(terms={**default.terms})
    assert extended.groups == default.groups and extended.fallback == default.fallback
    assert extended.batch == default.batch
    only_kl = LossConfig(terms={"kl": default.terms["kl"]})
    assert only_kl.groups == {} and only_kl.fallback is None and only_kl.batch == {}
