"""Code and files written for the seed's API (shared/seed) work unchanged, in the seed's own calling style.

The seed's reader below is written from the seed's definition (dataclasses built with ``Cls(**entry)``), so
a test can prove that the seed loads the files we write.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import warnings
from pathlib import Path

import auraloss
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

DATA = Path(__file__).parents[1] / "data"
GOLDEN = {  # file: (logged steps, epochs)
    "seed_history_v1.json": (12, 3),  # the seed before its per-term fields
    "seed_history_v2.json": (12, 3),  # the seed with stft/mag_recon/if_recon fields
    "history_v0.json": (1, 2),  # this project's first format
    "history_v1_distill.json": (6, 2),  # this project's format with components, before format 2
}


# --- the seed's reader, from its definition -------------------------------------------------------------


@dataclasses.dataclass
class SeedStep:
    epoch: int
    step: int
    total_steps: int
    train_loss: float
    recon_loss: float
    kl_loss: float
    kl_weight: float
    learning_rate: float
    step_time_s: float
    stft_loss: float = 0.0
    mag_recon_loss: float = 0.0
    if_recon_loss: float = 0.0


@dataclasses.dataclass
class SeedEpoch:
    epoch: int
    total_epochs: int
    train_loss: float
    val_loss: float
    val_recon_loss: float
    val_kl_loss: float
    kl_divergence: float
    overfitting_gap: float
    learning_rate: float
    eta_seconds: float
    elapsed_seconds: float
    val_stft_loss: float = 0.0
    val_mag_recon_loss: float = 0.0
    val_if_recon_loss: float = 0.0


def seed_from_dict(data):
    return (
        [SeedStep(**d) for d in data.get("step_metrics", [])],
        [SeedEpoch(**d) for d in data.get("epoch_metrics", [])],
    )


# --- histories --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_history_format_loads_completely(name, recwarn):
    from distill_core.training.metrics import MetricsHistory

    history = MetricsHistory.load(DATA / name)
    steps, epochs = GOLDEN[name]
    assert (len(history.step_metrics), len(history.epoch_metrics)) == (steps, epochs)
    raw = json.loads((DATA / name).read_text())
    raw_epochs = raw.get("epoch_metrics", raw.get("epochs"))
    assert [e.val_loss for e in history.epoch_metrics] == [e["val_loss"] for e in raw_epochs]
    assert [e.train_loss for e in history.epoch_metrics] == [e["train_loss"] for e in raw_epochs]
    assert not recwarn.list  # nothing in these files is unknown or dropped


def test_seed_per_term_fields_and_our_components_survive():
    from distill_core.training.metrics import MetricsHistory

    seed = MetricsHistory.load(DATA / "seed_history_v2.json")
    assert seed.epoch_metrics[2].val_if_recon_loss == pytest.approx(0.65)
    assert seed.step_metrics[5].stft_loss == pytest.approx(1.3)
    ours = MetricsHistory.load(DATA / "history_v1_distill.json")
    assert ours.step_metrics[0].components["sisdr_loss"] == -3.25
    assert ours.epoch_metrics[1].val_components["sisdr_loss"] == -4.0
    assert ours.epoch_metrics[1].nonfinite_steps == 1


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_seeds_reader_loads_what_we_write(name, tmp_path):
    from distill_core.training.metrics import MetricsHistory

    history = MetricsHistory.load(DATA / name)
    written = json.loads(history.save(tmp_path / "history.json").read_text())
    steps, epochs = seed_from_dict(written)
    assert (len(steps), len(epochs)) == GOLDEN[name]
    assert [e.val_loss for e in epochs] == [e.val_loss for e in history.epoch_metrics]
    assert MetricsHistory.load(tmp_path / "history.json") == history  # and nothing of ours is lost


def test_unknown_top_level_key_warns_by_name_and_non_history_is_an_error(tmp_path):
    from distill_core.training.metrics import HistoryError, MetricsHistory

    data = json.loads((DATA / "seed_history_v2.json").read_text())
    data["dashboard_state"] = {"tab": 2}
    path = tmp_path / "history.json"
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="'dashboard_state'"):
        history = MetricsHistory.load(path)
    assert len(history.epoch_metrics) == 3
    path.write_text(json.dumps({"runs": [], "version": 3}))
    with pytest.raises(HistoryError, match=rf"{path}: not a training history: expected 'step_metrics'"):
        MetricsHistory.load(path)


def test_seed_metrics_api():
    from distill_core.training.metrics import EpochMetrics, MetricsHistory

    history = MetricsHistory.load(DATA / "seed_history_v2.json")
    curves = history.get_loss_curves()
    assert curves["train_losses"] == [e.train_loss for e in history.epoch_metrics]
    assert curves["val_losses"] == [1.9, 1.6, 1.7]
    assert curves["recon_losses"] == [e.val_recon_loss for e in history.epoch_metrics]
    assert curves["kl_losses"] == [e.val_kl_loss for e in history.epoch_metrics]
    assert curves["val_stft_loss"] == pytest.approx([1.4, 1.2, 1.0])
    assert history.get_best_epoch() == 1 and isinstance(history.get_best_epoch(), int)
    assert history.best_epoch() is history.epoch_metrics[1]
    # The seed's ETA: elapsed per epoch so far (37.5 s / 3) times the epochs left (10 - 2 - 1).
    assert history.compute_eta(2, 10) == pytest.approx(37.5 / 3 * 7)
    assert history.compute_eta(0, 10) == 0.0 and MetricsHistory().compute_eta(3, 10) == 0.0
    gap = history.epoch_metrics[-1].overfitting_gap  # (1.7 - 1.4) / 1.4
    assert history.is_overfitting(threshold=gap - 1e-6) and not history.is_overfitting(threshold=gap + 1e-6)
    assert not MetricsHistory().is_overfitting()
    history.add_epoch(EpochMetrics(3, 10, 1.0, 1.0, 0.1, 1.0, 1.0, 0.0, 1e-3, 1.0, 50.0))
    assert history.epoch_metrics is history.epochs and len(history.epochs) == 4


# --- configs ---------------------------------------------------------------------------------------------


def test_seed_modules_and_names_import():
    from distill_core.models.losses import (
        compute_kl_divergence,  # noqa: F401
    )
    from distill_core.training.config import KLLossConfig, LossConfig, ReconLossConfig, STFTLossConfig

    config = LossConfig()
    assert isinstance(config.kl, KLLossConfig) and isinstance(config.stft, STFTLossConfig)
    assert isinstance(config.reconstruction, ReconLossConfig)


def kl_weights(config, epochs=10):
    from distill_core import CombinedLoss

    loss = CombinedLoss(config)
    return [loss.weights(e, epochs)["kl"] for e in range(epochs)]


def test_seed_config_constructors_keyword_and_positional():
    from distill_core.models.losses import get_kl_weight
    from distill_core.training.config import KLLossConfig, LossConfig, ReconLossConfig, STFTLossConfig

    stft = STFTLossConfig(fft_sizes=(256, 512), hop_sizes=(64, 128), win_lengths=(256, 512))
    recon = ReconLossConfig(weight=0.2, magnitude_weight=1.0, if_weight=0.25)
    kl = KLLossConfig(weight_max=0.02, warmup_fraction=0.5, free_bits=0.1)
    for config in (LossConfig(stft=stft, reconstruction=recon, kl=kl), LossConfig(stft, recon, kl)):
        assert config.stft.fft_sizes == (256, 512) and config.reconstruction.if_weight == 0.25
        assert config.kl.weight_max == 0.02 and config.kl.warmup_fraction == 0.5 and config.kl.free_bits == 0.1
    positional = KLLossConfig(0.02, 0.5)  # the seed's meaning: a warm-up to 0.02 over half the epochs
    assert positional.free_bits == 0.1
    assert kl_weights(LossConfig(kl=positional)) == [get_kl_weight(e, 10, 0.5, 0.02) for e in range(10)]
    assert kl_weights(LossConfig(kl=positional))[:6] == pytest.approx([0.0, 0.004, 0.008, 0.012, 0.016, 0.02])


def test_seed_config_assignment_changes_the_loss():
    from distill_core import CombinedLoss
    from distill_core.models.losses import get_kl_weight
    from distill_core.training.config import LossConfig, STFTLossConfig

    config = LossConfig()
    config.kl.weight_max = 0.02
    config.kl.warmup_fraction = 0.5
    assert kl_weights(config) == [get_kl_weight(e, 10, 0.5, 0.02) for e in range(10)]
    config.stft = STFTLossConfig(fft_sizes=(128,), hop_sizes=(32,), win_lengths=(128,))
    assert [r.fft for r in CombinedLoss(config).terms["stft"].loss.resolutions] == [128]


def test_load_config_reads_the_seeds_asdict_layout(tmp_path):
    from distill_core import ConfigError, load_config
    from distill_core.training.config import KLLossConfig, LossConfig, ReconLossConfig, STFTLossConfig

    expected = LossConfig(
        STFTLossConfig(), ReconLossConfig(weight=0.1, magnitude_weight=1.0, if_weight=0.5), KLLossConfig(0.02, 0.5, 0.2)
    )
    assert load_config(DATA / "seed_loss_config.json") == expected
    assert load_config(json.loads((DATA / "seed_loss_config.json").read_text())) == expected
    typo = tmp_path / "loss.json"
    typo.write_text(json.dumps({"stft": {"fft_size": [512]}, "kl": {"weight_mx": 0.02}}))
    with pytest.raises(ConfigError) as info:
        load_config(typo)
    assert info.value.source == str(typo)
    paths = dict(info.value.problems)
    assert "did you mean 'weight_max'" in paths["kl.weight_mx"]
    assert "did you mean 'fft_sizes'" in paths["stft.fft_size"]
    with pytest.raises(ConfigError, match=r"kl\.warmup_fraction: .*expected"):
        load_config({"kl": {"weight_max": 0.02, "warmup_fraction": 2.0}})


# --- the functional loss API -----------------------------------------------------------------------------


def spectrograms(b=2, f=32, t=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(b, 2, f, t, generator=g),
        torch.rand(b, 2, f, t, generator=g),
        torch.randn(b, 8, generator=g),
        torch.randn(b, 8, generator=g),
    )


def flat(s):
    return s[:, 0:1].reshape(s.shape[0], 1, -1)


def test_create_stft_loss_is_called_as_the_seed_calls_it():
    from distill_core.models.losses import compute_combined_loss, create_stft_loss
    from distill_core.training.config import LossConfig

    config = LossConfig()
    recon, target, mu, logvar = spectrograms()
    fn = create_stft_loss(config, torch.device("cpu"))
    reference = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[512, 1024, 2048], hop_sizes=[128, 256, 512], win_lengths=[512, 1024, 2048]
    )
    value = fn(flat(recon), flat(target))
    assert value.dim() == 0
    torch.testing.assert_close(value, reference(flat(recon), flat(target)), rtol=1e-5, atol=1e-6)
    ours = compute_combined_loss(recon, target, mu, logvar, config, 0.01, _stft_loss_fn=fn)
    theirs = compute_combined_loss(recon, target, mu, logvar, config, 0.01, _stft_loss_fn=reference)
    for key in ("total_loss", "stft_loss", "mag_recon_loss", "if_recon_loss", "kl_loss", "recon_loss"):
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)


def seed_reference(recon, target, mu, logvar, kl_weight, stft_fn, recon_weight=0.1, if_weight=0.5, free_bits=0.1):
    """The seed's compute_combined_loss, from its definition."""
    mag = (recon[:, 0:1] - target[:, 0:1]).abs().mean()
    weights = target[:, 0:1] / (target[:, 0:1].mean() + 1e-8)
    if_loss = ((recon[:, 1:2] - target[:, 1:2]).abs() * weights).mean()
    recon_term = recon_weight * (mag + if_weight * if_loss)
    stft = stft_fn(flat(recon), flat(target)).clamp(min=0.0)
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).clamp(min=free_bits).sum(dim=1).mean()
    kl_term = kl_weight * kl if kl_weight > 0 else torch.zeros_like(kl)
    return stft + recon_term + kl_term


def test_short_spectrogram_returns_what_the_seed_returns():
    from distill_core.models.losses import compute_combined_loss
    from distill_core.training.config import LossConfig

    recon, target, mu, logvar = spectrograms(2, 32, 40)  # 1280 samples flattened, less than the 2048 FFT
    reference = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[512, 1024, 2048], hop_sizes=[128, 256, 512], win_lengths=[512, 1024, 2048]
    )
    out = compute_combined_loss(recon, target, mu, logvar, LossConfig(), 0.005)
    torch.testing.assert_close(
        out["total_loss"], seed_reference(recon, target, mu, logvar, 0.005, reference), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kl_weight", [0.0, -0.5])
def test_kl_weight_zero_or_less_leaves_kl_out(kl_weight):
    from distill_core.models.losses import compute_combined_loss
    from distill_core.training.config import LossConfig

    recon, target, mu, logvar = spectrograms()
    out = compute_combined_loss(recon, target, mu, logvar, LossConfig(), kl_weight)
    torch.testing.assert_close(out["total_loss"], out["stft_loss"] + out["recon_loss"])
    assert out["kl_loss"] > 0  # still reported
    with pytest.raises(ValueError, match="kl_weight: expected a finite number"):
        compute_combined_loss(recon, target, mu, logvar, LossConfig(), math.nan)


# --- the non-finite fallback's gradients --------------------------------------------------------------------


def test_fallback_gradients_equal_the_reconstruction_groups_alone(sync_counter):
    from distill_core import CombinedLoss
    from distill_core.training.config import LossConfig

    recon, target, mu, logvar = spectrograms()
    logvar = logvar.clone()
    logvar[0, 0] = 1e4  # exp overflows: KL is inf, its backward would be 0 x inf = NaN
    loss = CombinedLoss(LossConfig())
    leaves = [t.clone().requires_grad_(True) for t in (recon, mu, logvar)]
    out = loss({"recon": leaves[0], "target": target, "mu": leaves[1], "logvar": leaves[2]}, weights={"kl": 0.01})
    out["total_loss"].backward()
    assert set(sync_counter.values()) == {0}
    assert torch.equal(out["nonfinite"], torch.tensor(1.0))
    alone = recon.clone().requires_grad_(True)
    expected = loss({"recon": alone, "target": target, "mu": mu, "logvar": logvar})["recon_loss"]
    expected.backward()
    torch.testing.assert_close(out["total_loss"], expected.detach())
    torch.testing.assert_close(leaves[0].grad, alone.grad)
    assert torch.equal(leaves[1].grad, torch.zeros_like(mu)) and torch.equal(leaves[2].grad, torch.zeros_like(logvar))


def test_finite_step_gradients_are_untouched_by_the_gate():
    from distill_core import CombinedLoss
    from distill_core.training.config import LossConfig

    recon, target, mu, logvar = spectrograms()
    loss = CombinedLoss(LossConfig())
    grads = []
    for _ in range(2):
        leaves = [t.clone().requires_grad_(True) for t in (recon, mu, logvar)]
        out = loss({"recon": leaves[0], "target": target, "mu": leaves[1], "logvar": leaves[2]}, weights={"kl": 0.01})
        out["total_loss"].backward()
        grads.append([t.grad for t in leaves])
    loss.config.fallback = None  # no gate at all
    leaves = [t.clone().requires_grad_(True) for t in (recon, mu, logvar)]
    ungated = CombinedLoss(loss.config)(
        {"recon": leaves[0], "target": target, "mu": leaves[1], "logvar": leaves[2]}, weights={"kl": 0.01}
    )
    ungated["total_loss"].backward()
    for got, want in zip(grads[0], [t.grad for t in leaves]):
        assert torch.equal(got, want)


# --- the training loop in the seed's calling style ------------------------------------------------------------


class TinyVAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Linear(2 * 32 * 80, 8)
        self.dec = torch.nn.Linear(4, 2 * 32 * 80)

    def forward(self, x):
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=-1)
        return torch.nn.functional.softplus(self.dec(mu)).view_as(x), mu, logvar


def data(n=6):
    torch.manual_seed(0)
    return DataLoader(TensorDataset(torch.rand(n, 2, 32, 80)), batch_size=2)


def test_train_and_validate_epoch_take_the_seeds_parameters():
    from distill_core.models.losses import create_stft_loss
    from distill_core.training.config import LossConfig
    from distill_core.training.loop import train_epoch, validate_epoch
    from distill_core.training.metrics import StepMetrics

    model, loader, config = TinyVAE(), data(), LossConfig()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    stft = create_stft_loss(config, torch.device("cpu"))
    seen = []
    out = train_epoch(model, loader, optimizer, 0.005, torch.device("cpu"), 1.0, config, stft, 0, seen.append, None)
    assert out["train_loss"] == out["total_loss"] and {"stft_loss", "kl_loss", "recon_loss"} <= set(out)
    assert [m.step for m in seen] == [2]  # the default window: one StepMetrics per 10 steps and at the end
    # (``step`` is 0-based, as the seed's: the index of the window's last step)
    assert all(isinstance(m, StepMetrics) for m in seen)
    val = validate_epoch(model, loader, 0.005, torch.device("cpu"), config, stft)
    for seed_key, ours in (
        ("val_loss", "total_loss"),
        ("val_recon_loss", "recon_loss"),
        ("val_kl_loss", "kl_loss"),
        ("val_stft_loss", "stft_loss"),
    ):
        assert val[seed_key] == val[ours]
    assert val["kl_divergence"] > 0
    every = []
    train_epoch(model, loader, optimizer, 0.005, "cpu", 1.0, loss_config=config, callback=every.append, log_interval=1)
    assert [m.step for m in every] == [0, 1, 2]
    with pytest.raises(TypeError, match="4th positional argument is kl_weight"):
        train_epoch(model, loader, optimizer, config)


def test_cancel_event_is_honoured_between_steps():
    from distill_core.training.loop import train_epoch

    model, loader = TinyVAE(), data(8)
    cancel = threading.Event()
    steps = []

    def on_step(metrics):
        steps.append(metrics.step)
        if metrics.step == 1:  # the second step (0-based, as the seed counts)
            cancel.set()

    train_epoch(
        model,
        loader,
        torch.optim.SGD(model.parameters(), lr=1e-3),
        0.01,
        "cpu",
        1.0,
        callback=on_step,
        cancel_event=cancel,
        log_interval=1,
    )
    assert steps == [0, 1]


def test_epoch_overfitting_gap_is_the_seeds(tmp_path):
    from distill_core.training.config import LossConfig
    from distill_core.training.loop import train

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        history = train(TinyVAE(), data(), data(2), LossConfig(), epochs=2, checkpoint_dir=tmp_path)
    for e in history.epoch_metrics:
        assert e.overfitting_gap == pytest.approx((e.val_loss - e.train_loss) / e.train_loss)
    assert len(history.step_metrics) == 2  # logged steps are kept in the history
    written = json.loads((tmp_path / "history.json").read_text())
    assert [e.val_loss for e in seed_from_dict(written)[1]] == [e.val_loss for e in history.epoch_metrics]
