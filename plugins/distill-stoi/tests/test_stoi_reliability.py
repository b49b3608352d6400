"""Issue 36, items 1 and 2, where a user meets them: ``distill-loss check`` (its own process) refuses a sample
rate typed in kHz naming the key, the value and the unit; and a NaN or an inf in the target makes the
combined loss flag the step ``nonfinite`` for STOI and ESTOI alike, never a finite plausible number."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from distill_core import CombinedLoss, load_config

TERMS = ("stoi", "estoi")


@pytest.mark.e2e
@pytest.mark.parametrize("name", TERMS)
def test_check_refuses_a_rate_in_khz_in_one_line(tmp_path, name):
    path = tmp_path / "loss.toml"
    path.write_text(f'recipe = "none"\n\n[terms.{name}]\nsample_rate = 16\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", "check", str(path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: invalid loss config in {path}: terms.{name}.sample_rate: expected a sample rate in Hz between "
        "1000 and 384000 (16 looks like kHz: 16000?), got 16"
    ]
    path.write_text(f'recipe = "none"\n\n[terms.{name}]\nsample_rate = 16000\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", "check", str(path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.startswith(f"# {path}: valid"), done.stdout + done.stderr


def speech_like(n: int = 8_000) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    target = torch.randn(2, 1, n, generator=g)
    return {"recon": target + 0.5 * torch.randn(2, 1, n, generator=g), "target": target}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", TERMS)
def test_a_nonfinite_target_is_flagged_by_the_combined_loss(name, bad):
    loss = CombinedLoss(load_config({"recipe": "none", "terms": {name: {"sample_rate": 16_000}}}))
    batch = speech_like()
    clean = loss(batch)
    assert float(clean["nonfinite"]) == 0.0 and torch.isfinite(clean[f"{name}_loss"])
    for where in (4_000, -1):  # inside a kept frame, and the last sample, read by no analysis frame
        broken = {k: v.clone() for k, v in batch.items()}
        broken["target"][1, 0, where] = bad
        out = loss(broken)
        assert float(out["nonfinite"]) == 1.0, (where, out)
        assert torch.isnan(out[f"{name}_loss"]) and torch.isnan(out["total_loss"]), (where, out)
