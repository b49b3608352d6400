"""docs/config.md's plain PyTorch loop with a stateful term runs as written (fewer steps): the update step runs
once per batch and never in eval mode, the figures are logged, and the saved loss state restores exactly."""

from __future__ import annotations

import pytest
import torch


def test_the_docs_loop_trains_saves_and_restores_a_stateful_term(config_doc_loop, one_torch_thread):
    pytest.importorskip("distill_discriminators")
    scope = config_doc_loop(
        "## Training a stateful term: what a loop owes it", "## Errors", "small_gan.toml", 30, 4, "stateful-term loop"
    )
    loss, resumed, log = scope["loss"], scope["resumed"], scope["log"]
    assert loss.stateful == ("adversarial",) and len(log) == 4
    assert {"adversarial_disc_loss", "adversarial_real_score", "adversarial_fake_score"} <= set(log[0])
    assert int(loss.terms["adversarial"].adversarial.updates) == 4  # the docs' validation call updated nothing
    saved, restored = loss.state_dict(), resumed.state_dict()
    assert all(torch.equal(v, restored[k]) for k, v in saved.items() if isinstance(v, torch.Tensor))
    fresh = scope["CombinedLoss"](scope["load_config"]("small_gan.toml")).state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in saved.items() if isinstance(v, torch.Tensor))
    assert loss.training and torch.isfinite(scope["val"]["total_loss"])
