"""The Lightning GAN example trains two steps with Trainer(fast_dev_run=2): one discriminator step per training
batch, none in validation, every update figure logged, and the generator's parameters moved."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

L = pytest.importorskip("lightning", reason="lightning is not installed (pip install 'distill-core[test]')")
pytest.importorskip(
    "distill_discriminators",
    reason="the adversarial term's plugin is not installed (pip install plugins/distill-discriminators)",
)

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

SMALL_D = [
    {"kind": "mpd", "options": {"periods": [2, 3], "always_pad": True, "normalize_input": True}},
    {"kind": "mrd", "options": {"fft_sizes": [256, 128], "padding": "dac", "normalize_input": True}},
]
CONFIG = {
    "recipe": "none",
    "terms": {"wave_l1": {}, "adversarial": {"preset": "dac", "width": 0.125, "discriminators": SMALL_D}},
}
FIGURES = ("adversarial_disc_loss", "adversarial_real_score", "adversarial_fake_score")


def load_example():
    spec = importlib.util.spec_from_file_location("lit_gan", Path(__file__).with_name("lit_gan.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def waves(n: int, seed: int) -> TensorDataset:
    return TensorDataset(0.3 * torch.randn(n, 1, 2048, generator=torch.Generator().manual_seed(seed)))


def test_fast_dev_run_steps_the_discriminator_on_training_batches_only(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(1, 4, 9, padding=4), torch.nn.Tanh(), torch.nn.Conv1d(4, 1, 9, padding=4)
    )
    module = load_example().LitGAN(model, CONFIG)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(
        fast_dev_run=2,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    try:
        trainer.fit(module, DataLoader(waves(4, 0), batch_size=2), DataLoader(waves(4, 1), batch_size=2))
    finally:
        torch.set_num_threads(threads)
    adversarial = module.loss.terms["adversarial"].adversarial
    assert trainer.global_step == 2 and int(adversarial.updates) == 2  # two validation batches ran: no D step
    metrics = trainer.callback_metrics
    for key in ("total_loss", "wave_l1_loss", *FIGURES):
        assert f"train/{key}_epoch" in metrics and math.isfinite(float(metrics[f"train/{key}_epoch"])), key
    assert "val/total_loss" in metrics and not any(f"val/{k}" in metrics for k in FIGURES)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_an_optimizer_over_the_loss_parameters_is_refused():
    module = load_example().LitGAN(torch.nn.Conv1d(1, 1, 3, padding=1), CONFIG)
    module.model = torch.nn.ModuleList([module.model, module.loss])  # a model that wrongly holds the loss
    with pytest.raises(ValueError, match=r"loss's parameter 'loss\.terms\.adversarial\."):
        module.configure_optimizers()
