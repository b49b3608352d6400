"""The gradient balancer inside CombinedLoss and training: config, one backward call, shares, checkpoints, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader, TensorDataset

from distill_core import CombinedLoss, ConfigError, load_config
from distill_core.training.metrics import EpochMetrics, MetricsHistory

ROOT = Path(__file__).resolve().parents[2]
BALANCED = {"balancer": {"enabled": True, "ema_decay": 0.9}}


def batch(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "recon": torch.rand(b, 2, 32, 80, generator=g).requires_grad_(True),
        "target": torch.rand(b, 2, 32, 80, generator=g),
        "mu": torch.randn(b, 8, generator=g).requires_grad_(True),
        "logvar": torch.randn(b, 8, generator=g).requires_grad_(True),
    }


def test_config_section_check_and_schema(tmp_path):
    path = tmp_path / "loss.toml"
    path.write_text("[balancer]\nenabled = true\ntotal_norm = 2.0\nper_batch_item = false\n")
    config = load_config(path)
    assert config.balancer.enabled and config.balancer.total_norm == 2.0 and not config.balancer.per_batch_item
    assert load_config({"balancer": {"enabled": True}}).balancer.input == "recon"
    with pytest.raises(ConfigError) as info:
        load_config({"balancer": {"enabled": True, "ema_decay": 1.5, "total_nrm": 1.0}})
    problems = dict(info.value.problems)
    assert "did you mean 'total_norm'" in problems["balancer.total_nrm"]
    with pytest.raises(ConfigError, match=r"balancer\.input: no configured term reads batch key 'y'"):
        load_config({"balancer": {"enabled": True, "input": "y"}})
    from distill_core.loss.schema import config_schema

    schema = config_schema()["properties"]["balancer"]
    assert set(schema["properties"]) == {"enabled", "input", "total_norm", "ema_decay", "per_batch_item", "epsilon"}
    assert schema["properties"]["ema_decay"]["default"] == 0.999


def item_norm(g):
    return g.flatten(1).norm(dim=1).mean()


def test_first_step_gradient_is_the_published_formula():
    loss = CombinedLoss(load_config(BALANCED))
    b = batch()
    out = loss(b, epoch=5, total_epochs=10)
    logs = loss.backward(out)
    # Effective weights: stft 1.0; the reconstruction group 0.1 * (1.0 mag_recon, 0.5 if_recon).
    shares = {"stft": 1.0, "mag_recon": 0.1, "if_recon": 0.05}
    expected = torch.zeros_like(b["recon"])
    for name, w in shares.items():
        fresh = batch()
        value = loss.terms[name](fresh)
        (g,) = torch.autograd.grad(value, fresh["recon"])
        expected += (w / sum(shares.values())) * g / (1e-12 + item_norm(g))  # first step: the average is the norm
        assert logs[f"ratio_{name}"].item() == pytest.approx(w / sum(shares.values()), rel=1e-5)
    torch.testing.assert_close(b["recon"].grad, expected, rtol=1e-5, atol=1e-8)
    # KL does not read recon: its plain weight (the warm-up's 0.01 at epoch 5 of 10).
    fresh = batch()
    (kl_mu,) = torch.autograd.grad(loss.terms["kl"](fresh) * 0.01, fresh["mu"])
    torch.testing.assert_close(b["mu"].grad, kl_mu)


def test_schedules_apply_to_shares_and_zero_weight_excludes():
    config = load_config(
        {
            **BALANCED,
            "terms": {"stft": {"weight": {"schedule": "cosine", "start": 1.0, "end": 0.0}}},
            "groups": {"reconstruction": {"if_weight": 0.0}},
        }
    )
    loss = CombinedLoss(config)
    for epoch in (0, 2):
        w_stft = 0.5 * (1 + math.cos(math.pi * epoch / 4))
        logs = loss.backward(loss(batch(), epoch=epoch, total_epochs=5))
        assert logs["ratio_stft"].item() == pytest.approx(w_stft / (w_stft + 0.1), rel=1e-4)
        assert logs["ratio_if_recon"].item() == 0.0
    assert loss.balancer.ema_count[loss.balancer.terms.index("if_recon")] == 0  # never averaged


def test_balanced_forward_and_backward_never_sync(sync_counter):
    loss = CombinedLoss(load_config(BALANCED))
    batches = [batch(seed=seed) for seed in range(4)]
    loss.backward(loss(batches[0], epoch=1, total_epochs=4))  # the shares vector is built once here
    counted = dict(sync_counter)
    for b in batches[1:]:
        loss.backward(loss(b, epoch=1, total_epochs=4))
    assert sync_counter == counted


def test_a_nonfinite_term_adds_no_gradient_and_is_counted():
    loss = CombinedLoss(load_config(BALANCED))
    clean, poisoned = batch(), batch()
    with torch.no_grad():
        poisoned["logvar"][0, 0] = 1e4  # KL overflows to inf
    reference = CombinedLoss(load_config(BALANCED))
    reference.backward(reference(clean, epoch=5, total_epochs=10))
    out = loss(poisoned, epoch=5, total_epochs=10)
    logs = loss.backward(out)
    assert out["nonfinite"].item() == 1.0 and logs["nonfinite"].item() == 0.0
    torch.testing.assert_close(poisoned["recon"].grad, clean["recon"].grad)  # the balanced terms are untouched
    assert torch.equal(poisoned["mu"].grad, torch.zeros_like(poisoned["mu"]))
    assert torch.equal(poisoned["logvar"].grad, torch.zeros_like(poisoned["logvar"]))
    torch.testing.assert_close(loss.balancer.ema_sum, reference.balancer.ema_sum)


def tiny_run():
    from distill_core.training.audio import synthetic_corpus
    from distill_core.training.model import SpectrogramVAE
    from distill_core.training.spectrogram import SpectrogramConfig, to_spectrogram

    spec = SpectrogramConfig(sample_rate=8000, n_fft=128, hop=32, frames=32)
    specs = to_spectrogram(synthetic_corpus(12, spec.samples, spec.sample_rate, seed=0), spec)
    loaders = (DataLoader(TensorDataset(specs[4:]), batch_size=4), DataLoader(TensorDataset(specs[:4]), batch_size=4))

    def model(seed=0):
        torch.manual_seed(seed)
        return SpectrogramVAE(spec.bins, spec.frames, latent_dim=8, width=8)

    return loaders, model


def test_resume_restores_the_averages_and_reproduces_the_run(tmp_path):
    from distill_core.training.loop import train

    (train_loader, val_loader), model = tiny_run()
    config = load_config({**BALANCED, "terms": {"stft": {"fft_sizes": [256], "hop_sizes": [64], "win_lengths": [256]}}})
    torch.manual_seed(1)
    full = train(model(), train_loader, val_loader, config, epochs=3, checkpoint_dir=tmp_path / "full")
    assert set(full.epochs[0].balancer) == {
        f"{k}_{t}" for k in ("ratio", "ema_norm") for t in ("stft", "mag_recon", "if_recon")
    }

    class Stop(Exception):
        pass

    def stop_after_second(metrics):
        if isinstance(metrics, EpochMetrics) and metrics.epoch == 1:
            raise Stop

    torch.manual_seed(1)
    with pytest.raises(Stop):
        train(
            model(),
            train_loader,
            val_loader,
            config,
            epochs=3,
            checkpoint_dir=tmp_path / "cut",
            callbacks=[stop_after_second],
        )
    resumed = train(
        model(seed=99),
        train_loader,
        val_loader,
        config,
        epochs=3,
        checkpoint_dir=tmp_path / "cut",
        resume_from=tmp_path / "cut" / "last.pt",
    )
    assert resumed.epochs[2].train_loss == pytest.approx(full.epochs[2].train_loss, rel=1e-6)
    assert resumed.epochs[2].balancer == pytest.approx(full.epochs[2].balancer, rel=1e-6)


def test_cli_trains_a_balanced_config_and_records_the_ratios(tmp_path):
    from distill_core.cli.main import main

    config = tmp_path / "balanced.toml"
    config.write_text(docs_example())
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(config),
            "--epochs",
            "1",
            "--clips",
            "8",
            "--batch-size",
            "4",
            "--out",
            str(tmp_path),
            "--name",
            "bal",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    history = MetricsHistory.load(tmp_path / "bal" / "history.json")
    ratios = {k: v for k, v in history.epochs[0].balancer.items() if k.startswith("ratio_")}
    assert set(ratios) == {"ratio_stft", "ratio_mag_recon", "ratio_if_recon"}
    assert sum(ratios.values()) == pytest.approx(1.0, rel=1e-4)
    assert (tmp_path / "bal" / "losses.png").stat().st_size > 0


def docs_example() -> str:
    import re

    text = (ROOT / "docs" / "config.md").read_text()
    block = re.search(r"```toml\n(# balanced\.toml.*?)```", text, re.S)
    assert block, "docs/config.md lost its balancer example"
    return block.group(1)
