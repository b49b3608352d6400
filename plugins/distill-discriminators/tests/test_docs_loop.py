"""docs/config.md's adversarial config (gan.toml): it loads, its output weights and update schedule are what the
text says, and one training step writes the keys its table lists."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from distill_core import CombinedLoss, load_config

DOC = Path(__file__).resolve().parents[3] / "docs" / "config.md"


def test_the_docs_gan_config_gives_the_keys_of_its_table(tmp_path):
    text = DOC.read_text()
    section = text[text.index("## Stateful and multi-output terms") : text.index("## Output of CombinedLoss")]
    toml = re.search(r"```toml\n(# gan\.toml.*?)```", section, re.S)
    assert toml, "docs/config.md lost its adversarial config"
    (tmp_path / "gan.toml").write_text(toml.group(1))
    config = load_config(tmp_path / "gan.toml")
    config.terms["adversarial"].width = 1 / 16  # small discriminators: the test runs on a shared CPU
    torch.manual_seed(0)
    loss = CombinedLoss(config)
    assert loss.weights(0, 100)["adversarial_gen"] == 0.0 and loss.weights(50, 100)["adversarial_gen"] == 1.0
    assert loss.weights()["adversarial_feat"] == 2.0 and loss.update_clock.schedules["adversarial"].every == 1
    rows = "\n".join(line for line in section.splitlines() if line.startswith("| `"))
    table = set(re.findall(r"`(adversarial_\w+|ratio_adversarial_\w+)`", rows))
    assert len(table) == 8, table
    real = torch.randn(2, 1, 4096)
    batch = {"recon": (real + 0.1 * torch.randn_like(real)).requires_grad_(True), "target": real}
    figures = loss.update(batch)
    out = loss(batch, epoch=50, total_epochs=100)
    written = set(figures) | set(out)
    assert {k for k in table if not k.startswith("ratio_")} <= written, table - written
    assert torch.allclose(out["adversarial_loss"], out["adversarial_gen_loss"] + 2 * out["adversarial_feat_loss"])
