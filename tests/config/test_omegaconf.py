"""Loss configs from Hydra / OmegaConf: a config group picks the loss; bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

omegaconf = pytest.importorskip("omegaconf", reason="omegaconf is not installed (pip install 'distill-core[test]')")

from omegaconf import OmegaConf  # noqa: E402

from distill_core import ConfigError, LossConfig, load_config  # noqa: E402
from distill_core.loss.omegaconf_config import load_omegaconf  # noqa: E402

HYDRA = Path(__file__).parents[1] / "data" / "hydra"


def compose(choice: str):
    """What Hydra composes for ``loss=<choice>``, built with OmegaConf alone: the group file under ``loss``."""
    main = OmegaConf.load(HYDRA / "config.yaml")
    del main["defaults"]
    return OmegaConf.merge({"loss": OmegaConf.load(HYDRA / "loss" / f"{choice}.yaml")}, main)


def test_the_vae_group_resolves_interpolations_into_the_recipe():
    cfg = compose("vae")
    config = load_omegaconf(cfg.loss)
    assert config == load_config(OmegaConf.to_container(cfg.loss, resolve=True))
    assert config.terms["stft"].fft_sizes == (256, 512, 1024) and config.terms["stft"].win_lengths == (256, 512, 1024)
    assert type(config.terms["kl"].weight).__name__ == "Cyclical"
    assert set(config.terms) == set(LossConfig().terms)


def test_the_codec_group_replaces_the_recipe():
    config = load_omegaconf(compose("codec").loss)
    assert list(config.terms) == ["stft"] and config.terms["stft"].input == "waveform"


def test_a_missing_value_names_its_key():
    cfg = compose("vae")
    cfg.loss.terms.kl.free_bits = "???"
    with pytest.raises(ConfigError) as info:
        load_omegaconf(cfg.loss)
    assert info.value.problems == [
        (
            "loss.terms.kl.free_bits",
            "missing value (???): expected a value, set it in the config or on the command line",
        )
    ]


def test_an_unresolvable_interpolation_names_its_key():
    cfg = compose("codec")
    cfg.loss.terms.stft.hop_sizes = "${audio.hops}"
    with pytest.raises(ConfigError) as info:
        load_omegaconf(cfg.loss)
    [(path, reason)] = info.value.problems
    assert path == "loss.terms.stft.hop_sizes" and "audio.hops" in reason and "not resolve" in reason


def test_a_bad_value_after_resolution_names_the_hydra_key():
    cfg = compose("vae")
    cfg.audio.fft_sizes = [256, "x", 1024]
    with pytest.raises(ConfigError) as info:
        load_omegaconf(cfg.loss)
    assert ("loss.terms.stft.fft_sizes[1]", "expected int, got 'x'") in info.value.problems


def test_hydra_compose_with_the_group_override():
    pytest.importorskip("hydra", reason="hydra-core is not installed")
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(HYDRA), version_base="1.3"):
        vae = hydra_compose(config_name="config")
        codec = hydra_compose(config_name="config", overrides=["loss=codec", "audio.fft_sizes=[128,256,512]"])
    assert load_omegaconf(vae.loss) == load_omegaconf(compose("vae").loss)
    assert load_omegaconf(codec.loss).terms["stft"].fft_sizes == (128, 256, 512)
