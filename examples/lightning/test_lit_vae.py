"""The Lightning example trains two steps on CPU with Trainer(fast_dev_run=2) and logs every component."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

L = pytest.importorskip("lightning", reason="lightning is not installed (pip install 'distill-core[test]')")

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from distill_core.training.model import SpectrogramVAE  # noqa: E402


def load_example():
    spec = importlib.util.spec_from_file_location("lit_vae", Path(__file__).with_name("lit_vae.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spectrograms(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    magnitude = torch.rand(n, 1, 64, 32, generator=g) * 3
    inst_freq = torch.rand(n, 1, 64, 32, generator=g) * 2 - 1
    return TensorDataset(torch.cat([magnitude, inst_freq], dim=1))


def test_fast_dev_run_logs_train_and_val_components(tmp_path):
    torch.manual_seed(0)
    module = load_example().LitVAE(
        SpectrogramVAE(64, 32, latent_dim=8, width=8),
        {"terms": {"stft": {"fft_sizes": [256, 512], "hop_sizes": [64, 128], "win_lengths": [256, 512]}}},
    )
    loss = module.loss
    before = [p.detach().clone() for p in module.model.parameters()]
    trainer = L.Trainer(
        fast_dev_run=2,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(spectrograms(8, 0), batch_size=4), DataLoader(spectrograms(4, 1), batch_size=2))
    assert trainer.global_step == 2 and module.loss is loss  # the loss was built once, in __init__
    metrics = trainer.callback_metrics
    for stage in ("train", "val"):
        for key in ("total_loss", "recon_loss", "stft_loss", "mag_recon_loss", "if_recon_loss", "kl_loss"):
            name = f"{stage}/{key}" if stage == "val" else f"{stage}/{key}_epoch"
            assert name in metrics and math.isfinite(float(metrics[name])), name
    assert float(metrics["val/stft_loss"]) > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, module.model.parameters()))
