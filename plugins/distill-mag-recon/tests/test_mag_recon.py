import pytest
import torch
from distill_mag_recon import MagReconConfig, MagReconLoss

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
    total, count = 0.0, 0
    for i in range(3):
        for f in range(8):
            for t in range(5):
                total += abs(float(b["recon"][i, 0, f, t]) - float(b["target"][i, 0, f, t]))
                count += 1
    out = MagReconLoss(MagReconConfig())(b)
    assert abs(float(out) - total / count) <= 1e-6 * total / count


def test_ignores_the_if_channel():
    b = spectrograms()
    b2 = {**b, "recon": b["recon"].clone()}
    b2["recon"][:, 1] += 5
    assert torch.equal(MagReconLoss(MagReconConfig())(b), MagReconLoss(MagReconConfig())(b2))


def test_conformance():
    check_term(MagReconLoss, lambda dtype, device: spectrograms(dtype, device))


@pytest.mark.parametrize(
    "recon,target,message",
    [
        (
            torch.rand(3, 8, 5),
            torch.rand(3, 2, 8, 5),
            "mag_recon: batch['recon'] expected shape [B, 2, F, T] (4-D), got [3, 8, 5]",
        ),
        (torch.rand(3, 1, 8, 5), torch.rand(3, 1, 8, 5), "with 2 channels in dim 1, got [3, 1, 8, 5]"),
        (torch.rand(3, 2, 8, 5), torch.rand(4, 2, 8, 5), "batch['target'] has [4, 2, 8, 5]"),
        (
            torch.zeros(3, 2, 8, 5, dtype=torch.int32),
            torch.rand(3, 2, 8, 5),
            "expected a floating dtype, got torch.int32",
        ),
    ],
)
def test_bad_shapes(recon, target, message):
    with pytest.raises(BatchError) as err:
        MagReconLoss(MagReconConfig())({"recon": recon, "target": target})
    assert message in str(err.value)


def test_discovery_and_round_trip(tmp_path):
    assert str(check_discovery(MagReconLoss, "distill-mag-recon").provenance) == "distill-mag-recon==0.1.0"
    c = load_config({"recipe": "none", "terms": {"mag_recon": {"weight": 0.3}}})
    assert load_config(distill_core.dump_config(c, tmp_path / "c.yaml")) == c
