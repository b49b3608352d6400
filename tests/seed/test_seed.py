"""The seed's acceptance list (shared/seed), one test each, with `distill` read as `distill_core`."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from packaging.version import Version
from torch.utils.data import DataLoader, TensorDataset


def test_1_auraloss_dependency_available():
    import auraloss  # noqa: F401

    assert Version(importlib.metadata.version("auraloss")) >= Version("0.4.0")


def test_2_loss_config_nested_dot_access():
    from distill_core.training import LossConfig

    config = LossConfig()
    assert config.stft.weight == 1.0
    assert config.reconstruction.magnitude_weight == 1.0
    assert config.reconstruction.if_weight == 0.5
    assert config.kl.weight_max == 0.01


def _tensors(b=2):
    g = torch.Generator().manual_seed(0)
    recon = torch.rand(b, 2, 32, 80, generator=g)
    target = torch.rand(b, 2, 32, 80, generator=g)
    return recon, target, torch.randn(b, 8, generator=g), torch.randn(b, 8, generator=g)


def test_3_compute_combined_loss_returns_component_dict():
    from distill_core.models import compute_combined_loss
    from distill_core.training import LossConfig

    out = compute_combined_loss(*_tensors(), LossConfig(), kl_weight=0.005)
    expected = {"total_loss", "stft_loss", "mag_recon_loss", "if_recon_loss", "kl_loss", "recon_loss"}
    assert expected <= set(out)
    for key in expected:
        assert out[key].dim() == 0 and torch.isfinite(out[key]), key
    recon_part = 0.1 * (1.0 * out["mag_recon_loss"] + 0.5 * out["if_recon_loss"])
    torch.testing.assert_close(out["recon_loss"], recon_part)
    torch.testing.assert_close(out["total_loss"], out["stft_loss"] + recon_part + 0.005 * out["kl_loss"])


def test_4_stft_loss_targets_magnitude_channel_only():
    from distill_stft import auraloss_reference

    from distill_core.models import compute_combined_loss, create_stft_loss
    from distill_core.training import LossConfig

    config = LossConfig()
    recon, target, mu, logvar = _tensors()
    out = compute_combined_loss(recon, target, mu, logvar, config, 0.0)
    changed = recon.clone()
    changed[:, 1] = torch.randn_like(changed[:, 1])
    out2 = compute_combined_loss(changed, target, mu, logvar, config, 0.0)
    assert torch.equal(out["stft_loss"], out2["stft_loss"])
    assert not torch.equal(out["if_recon_loss"], out2["if_recon_loss"])
    flat = lambda s: s[:, 0].reshape(s.shape[0], 1, -1)  # noqa: E731
    stft_config = config.to_loss_config().terms["stft"]  # the seed's dataclass as the stft plugin's config
    torch.testing.assert_close(out["stft_loss"], auraloss_reference(stft_config)(flat(recon), flat(target)))
    stft = create_stft_loss(config, "cpu")
    out3 = compute_combined_loss(recon, target, mu, logvar, config, 0.0, _stft_loss_fn=stft)
    torch.testing.assert_close(out3["stft_loss"], out["stft_loss"])


def test_5_metrics_extended_with_per_component_fields(tmp_path):
    from distill_core.training.metrics import EpochMetrics, MetricsHistory, StepMetrics

    step = StepMetrics(0, 1, 10, 1.0, 0.5, 2.0, 0.1, 1e-3, 0.01)
    assert (step.stft_loss, step.mag_recon_loss, step.if_recon_loss) == (0.0, 0.0, 0.0)
    epoch = EpochMetrics(0, 5, 1.0, 1.1, 0.5, 2.0, 1.5, 0.1, 1e-3, 4.0, 1.0)
    assert (epoch.val_stft_loss, epoch.val_mag_recon_loss, epoch.val_if_recon_loss) == (0.0, 0.0, 0.0)
    history = MetricsHistory()
    history.add_step(
        StepMetrics(0, 1, 10, 1.0, 0.5, 2.0, 0.1, 1e-3, 0.01, stft_loss=0.3, mag_recon_loss=0.2, if_recon_loss=0.1)
    )
    history.add_epoch(EpochMetrics(0, 5, 1.0, 1.1, 0.5, 2.0, 1.5, 0.1, 1e-3, 4.0, 1.0, val_stft_loss=0.4))
    back = MetricsHistory.load(history.save(tmp_path / "h.json"))
    assert back == history and back.steps[0].stft_loss == 0.3 and back.epochs[0].val_stft_loss == 0.4
    old = MetricsHistory.from_dict(
        {
            "step_metrics": [
                {
                    k: v
                    for k, v in history.to_dict()["step_metrics"][0].items()
                    if k not in ("stft_loss", "mag_recon_loss", "if_recon_loss")
                }
            ]
        }
    )
    assert old.step_metrics[0].stft_loss == 0.0


def test_6_public_api_re_exports():
    from distill_core.models import compute_combined_loss, create_stft_loss  # noqa: F401
    from distill_core.training import KLLossConfig, LossConfig, ReconLossConfig, STFTLossConfig

    config = LossConfig()
    assert isinstance(config.stft, STFTLossConfig)
    assert isinstance(config.reconstruction, ReconLossConfig)
    assert isinstance(config.kl, KLLossConfig)


class TinyVAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Linear(2 * 32 * 80, 8)
        self.dec = torch.nn.Linear(4, 2 * 32 * 80)

    def forward(self, x):
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=-1)
        return torch.nn.functional.softplus(self.dec(mu)).view_as(x), mu, logvar


@pytest.mark.slow
def test_7_training_loop_uses_combined_loss_with_fallback(monkeypatch):
    from distill_stft import STFTLoss

    from distill_core.training import LossConfig, train, train_epoch, validate_epoch

    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.rand(4, 2, 32, 80)), batch_size=2)
    model = TinyVAE()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    combined = train_epoch(model, data, opt, 0.0, "cpu", 1.0, loss_config=LossConfig())
    assert {"stft_loss", "mag_recon_loss", "if_recon_loss", "kl_loss", "recon_loss", "train_loss"} <= set(combined)
    legacy = train_epoch(model, data, opt, 0.0, "cpu", 1.0)
    assert set(legacy) == {
        "total_loss",
        "train_loss",
        "recon_loss",
        "kl_loss",
        "nonfinite",
        "stft_loss",
        "mag_recon_loss",
        "if_recon_loss",
    }
    assert legacy["stft_loss"] == legacy["mag_recon_loss"] == legacy["if_recon_loss"] == 0.0  # as the seed reports
    assert "val_stft_loss" in validate_epoch(model, data, 0.0, "cpu", loss_config=LossConfig())
    assert "stft_loss" not in validate_epoch(model, data, 0.0, "cpu")

    built = []
    original = STFTLoss.__init__
    monkeypatch.setattr(STFTLoss, "__init__", lambda self, cfg: built.append(1) or original(self, cfg))
    train(model, data, data, LossConfig(), epochs=2, optimizer=opt)
    assert built == [1]  # the STFT module is created once, at the start of training
