"""docs/config.md's codec recipe: waveform stft + DAC's multi-scale mel + SI-SDR, from three plugins."""

from __future__ import annotations

import re
from pathlib import Path

import auraloss
import pytest
import tomllib
import torch

from distill_core import CombinedLoss, load_config

ROOT = Path(__file__).resolve().parents[2]


def codec_toml() -> str:
    block = re.search(r"```toml\n(# codec\.toml.*?)```", (ROOT / "docs" / "config.md").read_text(), re.S)
    assert block, "docs/config.md lost its codec recipe"
    return block.group(1)


@pytest.mark.parametrize("balanced", [False, True])
def test_codec_recipe_builds_and_trains(tmp_path, balanced):
    text = codec_toml() + ("\n[balancer]\nenabled = true\n" if balanced else "")
    path = tmp_path / "codec.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.term_of("mel") == "mel" and tomllib.loads(text)["terms"]["mel"]["weight"] == 15.0
    loss = CombinedLoss(config)
    assert loss.provenance["mel"].distribution == "distill-mel"
    assert loss.provenance["auraloss_sisdr"].distribution == "distill-auraloss"
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 1, 8192, generator=g)
    recon = (target + 0.3 * torch.randn(2, 1, 8192, generator=g)).requires_grad_(True)
    out = loss({"recon": recon, "target": target})
    expected = out["stft_loss"] + 15.0 * out["mel_loss"] + 0.1 * out["auraloss_sisdr_loss"]
    torch.testing.assert_close(out["total_loss"], expected)
    sisdr = auraloss.time.SISDRLoss()(recon, target)
    torch.testing.assert_close(out["auraloss_sisdr_loss"], sisdr)
    logs = loss.backward(out)
    assert torch.isfinite(recon.grad).all() and recon.grad.abs().sum() > 0
    if balanced:
        shares = {t: logs[f"ratio_{t}"].item() for t in ("stft", "mel", "auraloss_sisdr")}
        assert shares == pytest.approx({"stft": 1 / 16.1, "mel": 15 / 16.1, "auraloss_sisdr": 0.1 / 16.1}, rel=1e-4)
