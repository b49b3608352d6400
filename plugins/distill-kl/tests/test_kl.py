import math

import pytest
import torch
from distill_kl import KLConfig, KLLoss

import distill_core
from distill_core import BatchError, LinearWarmup, load_config
from distill_core.testing import check_discovery, check_term


def latents(dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "mu": torch.randn(4, 6, generator=g, dtype=dtype).to(device),
        "logvar": (0.5 * torch.randn(4, 6, generator=g, dtype=dtype)).to(device),
    }


def reference(mu, logvar, free_bits):
    total = 0.0
    for i in range(mu.shape[0]):
        for d in range(mu.shape[1]):
            m, lv = float(mu[i, d]), float(logvar[i, d])
            total += max(-0.5 * (1 + lv - m * m - math.exp(lv)), free_bits)
    return total / mu.shape[0]


@pytest.mark.parametrize("free_bits", [0.0, 0.1, 0.5])
def test_value_against_a_loop_reference(free_bits):
    b = latents()
    out = KLLoss(KLConfig(free_bits=free_bits))(b)
    expected = reference(b["mu"], b["logvar"], free_bits)
    assert abs(float(out) - expected) <= 1e-6 * expected


def test_free_bits_floor():
    b = {"mu": torch.zeros(2, 5), "logvar": torch.zeros(2, 5)}  # KL exactly 0 per dimension
    assert float(KLLoss(KLConfig(free_bits=0.1))(b)) == pytest.approx(0.5)


def test_seed_config_names():
    c = KLConfig()
    assert (c.weight_max, c.warmup_fraction, c.free_bits) == (0.01, 0.3, 0.1)
    assert c.weight == LinearWarmup(0.01, 0.3)
    assert KLConfig(weight=0.2).weight_max == 0.2 and KLConfig(weight=0.2).warmup_fraction == 0.0


def test_conformance():
    check_term(KLLoss, lambda dtype, device: latents(dtype, device))


@pytest.mark.parametrize(
    "mu,logvar,message",
    [
        (torch.randn(4), torch.randn(4), "kl: batch['mu'] expected shape [B, D] (2-D), got [4] (1-D)"),
        (torch.randn(4, 6), torch.randn(4, 5), "batch['mu'] has shape [4, 6] but batch['logvar'] has [4, 5]"),
        (torch.randn(4, 6), torch.randn(3, 6), "batch['logvar'] has [3, 6]"),
        (torch.zeros(4, 6, dtype=torch.long), torch.randn(4, 6), "expected a floating dtype, got torch.int64"),
    ],
)
def test_bad_shapes(mu, logvar, message):
    with pytest.raises(BatchError) as err:
        KLLoss(KLConfig())({"mu": mu, "logvar": logvar})
    assert message in str(err.value)


def test_discovery_and_round_trip(tmp_path):
    assert str(check_discovery(KLLoss, "distill-kl").provenance) == "distill-kl==0.1.0"
    c = load_config({"recipe": "none", "terms": {"kl": {"free_bits": 0.2, "weight": 0.05}}})
    assert load_config(distill_core.dump_config(c, tmp_path / "c.toml")) == c
    with pytest.raises(distill_core.ConfigError, match="terms.kl.free_bits: expected a finite number >= 0"):
        load_config({"terms": {"kl": {"free_bits": -1.0}}})
