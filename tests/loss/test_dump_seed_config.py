"""dump_config takes every config CombinedLoss takes, the seed's LossConfig included, and writes the file whose
load_config builds an equal loss (issue 36, item 20); anything else is a TypeError naming what it takes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from distill_core import CombinedLoss, dump_config, dumps_config, load_config
from distill_core.training import config as seed_config


def vae_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "recon": torch.rand(2, 2, 32, 80, generator=g),
        "target": torch.rand(2, 2, 32, 80, generator=g),
        "mu": torch.randn(2, 8, generator=g),
        "logvar": torch.randn(2, 8, generator=g),
    }


SEED_CONFIGS = {
    "default": seed_config.LossConfig(),
    "changed": seed_config.LossConfig(
        stft=seed_config.STFTLossConfig(weight=0.5, fft_sizes=(256, 512), hop_sizes=(64, 128), win_lengths=(256, 512)),
        reconstruction=seed_config.ReconLossConfig(weight=0.2, magnitude_weight=2.0, if_weight=0.25),
        kl=seed_config.KLLossConfig(weight_max=0.05, warmup_fraction=0.1, free_bits=0.0),
    ),
}


@pytest.mark.parametrize("suffix", [".toml", ".json", ".yaml"])
@pytest.mark.parametrize("which", list(SEED_CONFIGS))
def test_the_seeds_config_is_written_as_the_file_that_builds_an_equal_loss(tmp_path, which, suffix):
    if suffix == ".yaml":
        pytest.importorskip("yaml")
    seed = SEED_CONFIGS[which]
    path = dump_config(seed, tmp_path / f"loss{suffix}")
    loaded = load_config(path)
    assert loaded == seed.to_loss_config() and loaded == seed  # the seed's config compares equal to its own
    assert dumps_config(seed, suffix) == path.read_text()
    batch = vae_batch()
    weights = {"kl": 0.01}
    original, again = CombinedLoss(seed)(batch, weights=weights), CombinedLoss(loaded)(batch, weights=weights)
    assert original.keys() == again.keys()
    for key in original:
        torch.testing.assert_close(again[key], original[key], rtol=0, atol=0, msg=key)


def test_every_config_combined_loss_takes_dumps_alike(tmp_path):
    seed = SEED_CONFIGS["changed"]
    generic = seed.to_loss_config()
    as_mapping = dataclasses.asdict(seed)
    texts = {dumps_config(c) for c in (seed, generic, as_mapping)}
    assert len(texts) == 1


@pytest.mark.parametrize("value", [None, 3, "loss.toml", ["stft"], seed_config.STFTLossConfig()])
def test_anything_else_is_a_type_error_naming_what_dump_config_takes(tmp_path, value):
    expected = (
        "expected a LossConfig, a mapping of loss config keys, or a config with to_loss_config() (e.g. the "
        f"seed's LossConfig), got {type(value).__name__}"
    )
    with pytest.raises(TypeError) as info:
        dump_config(value, tmp_path / "x.toml")
    assert str(info.value) == f"dump_config: {expected}"
    with pytest.raises(TypeError) as info:
        dumps_config(value)
    assert str(info.value) == f"dumps_config: {expected}"
    assert not (tmp_path / "x.toml").exists()
