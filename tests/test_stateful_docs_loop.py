"""docs/config.md's plain PyTorch loop with a stateful term runs as written (fewer steps): the update step runs
once per batch and never in eval mode, the figures are logged, and the saved loss state restores exactly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_the_docs_loop_trains_saves_and_restores_a_stateful_term(tmp_path, monkeypatch, one_torch_thread):
    pytest.importorskip("distill_discriminators")
    text = DOC.read_text()
    section = text[text.index("## Training a stateful term: what a loop owes it"):text.index("## Errors")]
    toml = re.search(r"```toml\n(# small_gan\.toml.*?)```", section, re.S)
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert toml and code, "docs/config.md lost its stateful-term loop"
    assert "steps = 30\n" in code.group(1)
    (tmp_path / "small_gan.toml").write_text(toml.group(1))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code.group(1).replace("steps = 30\n", "steps = 4\n"), str(DOC), "exec"), scope)  # noqa: S102
    loss, resumed, log = scope["loss"], scope["resumed"], scope["log"]
    assert loss.stateful == ("adversarial",) and len(log) == 4
    assert {"adversarial_disc_loss", "adversarial_real_score", "adversarial_fake_score"} <= set(log[0])
    assert int(loss.terms["adversarial"].adversarial.updates) == 4  # the docs' validation call updated nothing
    saved, restored = loss.state_dict(), resumed.state_dict()
    assert all(torch.equal(v, restored[k]) for k, v in saved.items() if isinstance(v, torch.Tensor))
    fresh = scope["CombinedLoss"](scope["load_config"]("small_gan.toml")).state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in saved.items() if isinstance(v, torch.Tensor))
    assert loss.training and torch.isfinite(scope["val"]["total_loss"])
