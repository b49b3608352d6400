import pytest
import torch
from distill_wave_l1 import WaveL1Config, WaveL1Loss

import distill_core
from distill_core import BatchError, CombinedLoss, load_config
from distill_core.testing import check_discovery, check_term


def waves(dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "recon": torch.randn(3, 2, 50, generator=g, dtype=dtype).to(device),
        "target": torch.randn(3, 2, 50, generator=g, dtype=dtype).to(device),
    }


def test_value_against_a_loop_reference():
    b = waves(torch.float64)
    diffs = [abs(r - t) for r, t in zip(b["recon"].flatten().tolist(), b["target"].flatten().tolist())]
    assert float(WaveL1Loss(WaveL1Config())(b)) == pytest.approx(sum(diffs) / len(diffs), rel=1e-12)


def test_gradient_is_the_sign_over_the_count():
    b = waves()
    recon = b["recon"].clone().requires_grad_(True)
    WaveL1Loss(WaveL1Config())({"recon": recon, "target": b["target"]}).backward()
    torch.testing.assert_close(recon.grad, torch.sign(recon.detach() - b["target"]) / recon.numel())


def test_conformance():
    check_term(WaveL1Loss, lambda dtype, device: waves(dtype, device))


def test_bad_shape_names_the_key():
    with pytest.raises(BatchError, match=r"wave_l1: batch\['recon'\] expected shape \[B, C, N\]"):
        WaveL1Loss(WaveL1Config())({"recon": torch.randn(3, 50), "target": torch.randn(3, 50)})


def test_discovery_and_a_vocoder_config(tmp_path):
    assert str(check_discovery(WaveL1Loss, "distill-wave-l1").provenance) == "distill-wave-l1==0.1.0"
    c = load_config(
        {"recipe": "none", "terms": {"wave_l1": {"inputs": {"recon": "recon_wave", "target": "target_wave"}}}}
    )
    assert load_config(distill_core.dump_config(c, tmp_path / "c.toml")) == c
    b = waves()
    out = CombinedLoss(c)({"recon_wave": b["recon"], "target_wave": b["target"]})
    torch.testing.assert_close(out["total_loss"], (b["recon"] - b["target"]).abs().mean())
