"""Every config file that loaded before the core redesign gives the same loss now, to a few float32 ulps
(5e-7 relative: the FFT's summation order, hence the last bit, varies with the CPU the test runs on).

``data/golden_losses.json`` holds the values the previous core (commit 74b5c53) computed for these configs
on the tensors below: the run folder's config and checkpoint, the seed's layout, the docs' and README's
examples, and the older group forms (``kind = "reconstruction"``, ``kind = "sum"``, ``if_weight``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distill_core import CombinedLoss, load_config
from distill_core.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((ROOT / "tests" / "data" / "golden_losses.json").read_text())

SOURCES = {
    "seed_loss_config.json": lambda: ROOT / "tests/data/seed_loss_config.json",
    "run_v1/config.toml": lambda: ROOT / "tests/data/run_v1/config.toml",
    "run_v1/last.pt config": lambda: load_checkpoint(ROOT / "tests/data/run_v1/last.pt")["config"],
    "docs/examples/vae_wave_core.toml": lambda: ROOT / "docs/examples/vae_wave_core.toml",
    "recipe (empty file)": lambda: {},
    "README loss.toml": lambda: {
        "terms": {
            "kl": {"weight": {"schedule": "cyclical", "max": 0.01, "cycles": 4}},
            "stft": {"fft_sizes": [256, 512, 1024], "hop_sizes": [64, 128, 256], "win_lengths": [256, 512, 1024]},
        }
    },
    "README codec.toml (no sisdr)": lambda: {"recipe": "none", "terms": {"stft": {"input": "waveform"}}},
    "README vae_wave.toml": lambda: {
        "terms": {
            "stft_wave": {
                "term": "stft",
                "input": "waveform",
                "inputs": {"recon": "recon_wave", "target": "target_wave"},
                "weight": 0.5,
            }
        }
    },
    "groups.reconstruction if_weight": lambda: {"groups": {"reconstruction": {"if_weight": 0.25}}},
    "kind reconstruction group": lambda: {
        "groups": {"reconstruction": {"kind": "reconstruction", "weight": 0.3, "magnitude_weight": 0.7}}
    },
    "kind sum group": lambda: {
        "recipe": "none",
        "terms": {"mag_recon": {}, "if_recon": {"weight": 2.0}},
        "groups": {"rec": {"kind": "sum", "weight": 0.5, "members": ["mag_recon", "if_recon"]}},
        "fallback": "rec",
    },
    "seed layout partial": lambda: {"kl": {"weight_max": 0.05}, "reconstruction": {"if_weight": 0.1}},
}
g = torch.Generator().manual_seed(0)
spec = {
    "recon": torch.rand(2, 2, 32, 40, generator=g),
    "target": torch.rand(2, 2, 32, 40, generator=g),
    "mu": torch.randn(2, 8, generator=g),
    "logvar": torch.randn(2, 8, generator=g) * 0.5,
    "recon_wave": torch.randn(2, 1, 1280, generator=g),
    "target_wave": torch.randn(2, 1, 1280, generator=g),
}
wave = {"recon": torch.randn(2, 1, 1280, generator=g), "target": torch.randn(2, 1, 1280, generator=g)}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_the_loss_of_every_config_that_loads_is_unchanged(name):
    loss = CombinedLoss(load_config(SOURCES[name]()))
    batch = wave if "codec" in name else spec
    values = loss({k: batch[k] for k in loss.reads}, epoch=3, total_epochs=10)
    assert set(values) == set(GOLDEN[name])
    for key, value in values.items():
        assert float(value) == pytest.approx(GOLDEN[name][key], rel=5e-7, abs=1e-12), key


def test_every_golden_config_is_checked():
    assert set(GOLDEN) == set(SOURCES)
