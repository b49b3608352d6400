"""The seed wing: the seed's config classes are real dataclasses, the seed's remaining calls answer as the
seed's do, and the generic layer below it trains any model through an adapter."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import attrs
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

# --- the seed's config classes ---------------------------------------------------------------------------


def test_the_seeds_configs_are_real_dataclasses():
    from distill_core.training.config import KLLossConfig, LossConfig, ReconLossConfig, STFTLossConfig

    config = LossConfig()
    assert all(dataclasses.is_dataclass(c) for c in (config, config.stft, config.reconstruction, config.kl))
    assert [f.name for f in dataclasses.fields(config)] == ["stft", "reconstruction", "kl"]
    assert [f.name for f in dataclasses.fields(KLLossConfig)] == ["weight_max", "warmup_fraction", "free_bits"]
    assert dataclasses.asdict(config)["reconstruction"] == {"weight": 0.1, "magnitude_weight": 1.0, "if_weight": 0.5}
    changed = dataclasses.replace(config, kl=dataclasses.replace(config.kl, weight_max=0.05))
    assert changed.kl.weight_max == 0.05 and config.kl.weight_max == 0.01
    assert isinstance(changed.stft, STFTLossConfig) and isinstance(changed.reconstruction, ReconLossConfig)


def test_a_seed_config_inside_a_users_dataclass_serialises_to_json():
    from distill_core.training.config import LossConfig

    @dataclasses.dataclass
    class Experiment:
        name: str
        loss: LossConfig = dataclasses.field(default_factory=LossConfig)

    text = json.dumps(dataclasses.asdict(Experiment("run-1")))
    back = json.loads(text)
    assert back["loss"]["kl"] == {"weight_max": 0.01, "warmup_fraction": 0.3, "free_bits": 0.1}
    assert back["loss"]["stft"]["fft_sizes"] == [512, 1024, 2048]


def test_one_function_converts_a_seed_config_and_equality_follows_it():
    from distill_core import LossConfig as Generic
    from distill_core import load_config
    from distill_core.training.config import KLLossConfig, LossConfig, to_loss_config

    seed = LossConfig(kl=KLLossConfig(0.02, 0.5, 0.2))
    generic = to_loss_config(seed)
    assert isinstance(generic, Generic) and generic.terms["kl"].free_bits == 0.2
    assert generic == load_config(dataclasses.asdict(seed)) == seed and seed == generic
    assert LossConfig() == Generic() and LossConfig() != generic
    with pytest.raises(TypeError, match="expected the seed's LossConfig, got dict"):
        to_loss_config({})


def test_an_invalid_seed_config_names_the_seeds_path():
    from distill_core import CombinedLoss, ConfigError
    from distill_core.training.config import KLLossConfig, LossConfig

    with pytest.raises(ConfigError, match=r"kl\.warmup_fraction: .*expected"):
        CombinedLoss(LossConfig(kl=KLLossConfig(warmup_fraction=2.0)))


# --- the generic config -------------------------------------------------------------------------------------


def test_the_generic_config_has_no_attribute_magic():
    from distill_core import LossConfig

    config = LossConfig()
    with pytest.raises(AttributeError):
        config.fallbak = None  # a typo is an error, not a new term
    with pytest.raises(AttributeError):
        config.stft  # noqa: B018 - seed-style access lives on the seed's classes
    assert attrs.has(LossConfig) and config.fallback == "reconstruction"
    with pytest.raises(TypeError):
        LossConfig(config.terms)  # keyword-only: no positional (stft, reconstruction, kl)


def test_group_members_carry_their_weights_as_data():
    from distill_core import GroupConfig, LossConfig

    group = LossConfig().groups["reconstruction"]
    assert group == GroupConfig(weight=0.1, members={"mag_recon": 1.0, "if_recon": 0.5}, key="recon_loss")
    assert GroupConfig(members=("a", "b")).members == {"a": 1.0, "b": 1.0}


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "recon": torch.rand(2, 2, 32, 40, generator=g),
        "target": torch.rand(2, 2, 32, 40, generator=g),
        "mu": torch.randn(2, 8, generator=g),
        "logvar": torch.randn(2, 8, generator=g),
    }


def test_a_per_call_weight_override_by_term_name():
    from distill_core import CombinedLoss

    loss = CombinedLoss()
    plain = loss(batch(), epoch=3, total_epochs=10)
    no_kl = loss(batch(), epoch=3, total_epochs=10, weights={"kl": 0.0})
    torch.testing.assert_close(no_kl["total_loss"], plain["stft_loss"] + plain["recon_loss"])
    doubled = loss(batch(), weights={"reconstruction": 0.2, "kl": 0.0})
    torch.testing.assert_close(doubled["recon_loss"], 2 * plain["recon_loss"])
    with pytest.raises(KeyError, match="weight override for 'kll': no such term or group"):
        loss(batch(), weights={"kll": 0.0})
    with pytest.raises(TypeError):
        loss(batch(), kl_weight=0.0)  # the seed's name lives in compute_combined_loss only


# --- the seed's remaining calls (item 10) ---------------------------------------------------------------------


class TinyVAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Linear(2 * 32 * 40, 8)
        self.dec = torch.nn.Linear(4, 2 * 32 * 40)

    def forward(self, x):
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=-1)
        return torch.nn.functional.softplus(self.dec(mu)).view_as(x), mu, logvar


def loader(n=4):
    torch.manual_seed(0)
    return DataLoader(TensorDataset(torch.rand(n, 2, 32, 40)), batch_size=2)


def test_legacy_train_epoch_reports_the_seeds_term_keys_as_zero():
    from distill_core.training import train_epoch

    model = TinyVAE()
    out = train_epoch(model, loader(), torch.optim.SGD(model.parameters(), lr=1e-3), 0.01, "cpu", 1.0, loss_config=None)
    assert out["stft_loss"] == 0.0 and out["mag_recon_loss"] == 0.0 and out["if_recon_loss"] == 0.0
    assert out["train_loss"] == out["total_loss"] > 0 and out["kl_loss"] > 0


def test_step_metrics_count_steps_from_zero_as_the_seed():
    from distill_core.training import train_epoch

    model, seen = TinyVAE(), []
    train_epoch(
        model,
        loader(6),
        torch.optim.SGD(model.parameters(), lr=1e-3),
        0.01,
        "cpu",
        1.0,
        callback=seen.append,
        log_interval=1,
    )
    assert [m.step for m in seen] == [0, 1, 2] and {m.total_steps for m in seen} == {3}


def test_validate_epoch_on_an_empty_loader_returns_the_seeds_seven_keys():
    from distill_core.training import LossConfig, validate_epoch

    for config in (None, LossConfig()):
        out = validate_epoch(TinyVAE(), [], 0.01, "cpu", loss_config=config)
        assert set(out) == {
            "val_loss",
            "val_recon_loss",
            "val_kl_loss",
            "kl_divergence",
            "val_stft_loss",
            "val_mag_recon_loss",
            "val_if_recon_loss",
        }
        assert out["kl_divergence"] == 0.0
        assert all(math.isnan(v) for k, v in out.items() if k != "kl_divergence")


def test_compute_combined_loss_returns_the_seeds_six_keys():
    from distill_core import CombinedLoss
    from distill_core.models import compute_combined_loss
    from distill_core.training import LossConfig

    b = batch()
    out = compute_combined_loss(b["recon"], b["target"], b["mu"], b["logvar"], LossConfig(), 0.01)
    assert set(out) == {"total_loss", "stft_loss", "mag_recon_loss", "if_recon_loss", "kl_loss", "recon_loss"}
    assert "nonfinite" in CombinedLoss()(b)  # the generic loss keeps its flag


def test_best_epoch_and_get_best_epoch_agree_across_segments():
    from distill_core.training.metrics import EpochMetrics, MetricsHistory

    history = MetricsHistory()
    for epoch, val in enumerate([1.0, 2.0, 3.0, 2.5]):
        history.add_epoch(EpochMetrics(epoch, 4, 1.0, val, 0.1, 0.0, 1.0, 0.0, 1e-3, 0.0, 1.0))
        if epoch == 1:
            history.start_segment(2, "a changed loss")
    assert history.best_epoch().epoch == history.get_best_epoch() == 3


# --- training for any model ----------------------------------------------------------------------------


class WaveModel(torch.nn.Module):
    """A waveform model (no latents): [B, 1, N] -> [B, 1, N]."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 1, 9, padding=4)

    def forward(self, x):
        return self.conv(x)


def wave_adapter(model, inputs, reads):
    return {"recon": model(inputs), "target": inputs}


def test_train_takes_any_model_through_an_adapter(tmp_path):
    from distill_core import load_config
    from distill_core.training import MetricsHistory, train

    config = load_config(
        {
            "recipe": "none",
            "terms": {"stft": {"input": "waveform", "fft_sizes": [64], "hop_sizes": [16], "win_lengths": [64]}},
        }
    )
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(4, 1, 512)), batch_size=2)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no posterior-collapse warning: nothing measured a KL
        history = train(
            WaveModel(),
            data,
            data,
            config,
            epochs=2,
            adapter=wave_adapter,
            checkpoint_dir=tmp_path,
            callbacks=[seen.append],
            log_interval=1,
        )
    assert [e.epoch for e in history.epochs] == [0, 1]
    assert set(history.epochs[-1].val_components) == {"stft_loss"} and history.epochs[-1].kl_divergence == 0.0
    assert history.epochs[-1].weights == {"stft": 1.0}
    assert [type(m).__name__ for m in seen].count("StepMetrics") == 4
    assert MetricsHistory.load(tmp_path / "history.json") == history
