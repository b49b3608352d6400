import pytest
import torch
from distill_if_recon import IFReconConfig, IFReconLoss

import distill_core
from distill_core import BatchError, load_config
from distill_core.testing import check_discovery, check_term


def spectrograms(dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "recon": torch.rand(3, 2, 8, 5, generator=g, dtype=dtype).to(device),
        "target": torch.rand(3, 2, 8, 5, generator=g, dtype=dtype).to(device),
    }


def test_value_against_a_loop_reference():
    b = spectrograms()
    mags = [float(b["target"][i, 0, f, t]) for i in range(3) for f in range(8) for t in range(5)]
    mean_mag = sum(mags) / len(mags)
    total = 0.0
    for i in range(3):
        for f in range(8):
            for t in range(5):
                w = float(b["target"][i, 0, f, t]) / (mean_mag + 1e-8)
                total += abs(float(b["recon"][i, 1, f, t]) - float(b["target"][i, 1, f, t])) * w
    expected = total / len(mags)
    out = IFReconLoss(IFReconConfig())(b)
    assert abs(float(out) - expected) <= 1e-6 * expected


def test_silent_target_bins_do_not_count():
    b = spectrograms()
    b["target"][:, 0, :4] = 0.0
    b2 = {**b, "recon": b["recon"].clone()}
    b2["recon"][:, 1, :4] += 100.0  # IF errors where the target is silent
    torch.testing.assert_close(IFReconLoss(IFReconConfig())(b), IFReconLoss(IFReconConfig())(b2))


def test_conformance():
    check_term(IFReconLoss, lambda dtype, device: spectrograms(dtype, device))


@pytest.mark.parametrize(
    "recon,target,message",
    [
        (
            torch.rand(3, 2, 8),
            torch.rand(3, 2, 8),
            "if_recon: batch['recon'] expected shape [B, 2, F, T] (4-D), got [3, 2, 8]",
        ),
        (torch.rand(3, 4, 8, 5), torch.rand(3, 4, 8, 5), "with 2 channels in dim 1"),
        (torch.rand(3, 2, 8, 5), torch.rand(3, 2, 8, 6), "expected equal shapes"),
    ],
)
def test_bad_shapes(recon, target, message):
    with pytest.raises(BatchError) as err:
        IFReconLoss(IFReconConfig())({"recon": recon, "target": target})
    assert message in str(err.value)


def test_discovery_and_round_trip(tmp_path):
    assert str(check_discovery(IFReconLoss, "distill-if-recon").provenance) == "distill-if-recon==0.1.0"
    c = load_config({"recipe": "none", "terms": {"if_recon": {"eps": 1e-6}}})
    assert load_config(distill_core.dump_config(c, tmp_path / "c.json")) == c
    with pytest.raises(distill_core.ConfigError, match="terms.if_recon.eps: expected eps > 0"):
        load_config({"terms": {"if_recon": {"eps": 0.0}}})
