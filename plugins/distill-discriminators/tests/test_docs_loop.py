"""docs/config.md's adversarial section: its gan.toml loads, and its plain PyTorch loop trains and saves a state that
resumes."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from distill_core import CombinedLoss, load_config

DOC = Path(__file__).resolve().parents[3] / "docs" / "config.md"


def test_the_docs_plain_loop_trains_and_its_checkpoint_resumes(tmp_path, monkeypatch):
    text = DOC.read_text()
    section = text[text.index("## Stateful and multi-output terms"):text.index("## Output of CombinedLoss")]
    toml = re.search(r"```toml\n(# gan\.toml.*?)```", section, re.S)
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert toml and code, "docs/config.md lost its adversarial example"
    assert "steps = 20\n" in code.group(1)
    (tmp_path / "gan.toml").write_text(toml.group(1))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code.group(1).replace("steps = 20\n", "steps = 4\n"), str(DOC), "exec"), scope)  # noqa: S102
    history = scope["history"]
    assert len(history) == 4
    keys = {"adversarial_gen_loss", "adversarial_feat_loss", "adversarial_loss", "adversarial_disc_loss",
            "adversarial_real_score", "adversarial_fake_score", "wave_l1_loss", "total_loss"}
    assert keys <= set(history[-1]) and all(torch.isfinite(v) for v in history[-1].values())
    assert int(scope["loss"].terms["adversarial"].adversarial.updates) == 4
    config = load_config("gan.toml")
    config.terms["adversarial"].width = 1 / 16
    fresh = CombinedLoss(config)
    fresh.load_state_dict(torch.load("last.pt", weights_only=True)["loss"])
    assert fresh.update_clock.calls == 4 and int(fresh.terms["adversarial"].adversarial.updates) == 4
