"""Behaviours users rely on that no other test pinned (issue 24): best-epoch tracking, deterministic validation,
the KL warm-up length, best epochs per segment, a balanced term with zero gradient, partial config sections,
the durable save and group member weights.

Each test goes through what a user calls (``distill_core``, ``distill_core.training``, ``train()``, compare's
table, files on disk) and was seen to fail with the defect its docstring names applied by hand.
"""

from __future__ import annotations

import math
import os
import re
import stat
import wave
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from distill_core import CombinedLoss, LossConfig, load_config
from distill_core.models import get_kl_weight
from distill_core.training import (
    MetricsHistory,
    SpectrogramConfig,
    SpectrogramVAE,
    to_spectrogram,
    train,
    validate_epoch,
)
from distill_core.training.checkpoint import load_checkpoint, save_checkpoint
from distill_core.training.compare import compare_runs, markdown

# --- best-epoch tracking ---------------------------------------------------------------------------------


class Level(nn.Module):
    """A model whose reconstruction is the input shifted by one learnable level: mag_recon is |level|."""

    def __init__(self) -> None:
        super().__init__()
        self.level = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent = x.new_zeros(x.shape[0], 2)
        return x + self.level, latent, latent


class ScriptedLevels(torch.optim.Optimizer):
    """An optimizer whose k-th step sets the level to ``levels[k]``: the validation curve the test chooses."""

    def __init__(self, params, levels: list[float]) -> None:
        super().__init__(params, {"lr": 0.0})
        self.levels = list(levels)
        self.steps = 0

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.fill_(self.levels[self.steps])
        self.steps += 1


def level_loaders() -> tuple[DataLoader, DataLoader]:
    """One batch of [2, 2, 16, 16] spectrograms for training and one for validation: one step per epoch."""
    x = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x), batch_size=2), DataLoader(TensorDataset(x), batch_size=2)


MAG_ONLY = {"recipe": "none", "terms": {"mag_recon": {}}}


def test_best_pt_holds_the_minimum_of_a_curve_with_a_dip(tmp_path):
    """Defect: best.pt follows the last epoch that improved on its predecessor, not the minimum so far."""
    curve = [3.0, 1.0, 4.0, 2.0, 1.5]  # down, up, then partly down again: the minimum stays at epoch 1
    model = Level()
    history = train(
        model,
        *level_loaders(),
        CombinedLoss(load_config(MAG_ONLY)),
        epochs=len(curve),
        optimizer=ScriptedLevels(model.parameters(), curve),
        checkpoint_dir=tmp_path,
        collapse_threshold=0.0,
    )
    assert [e.val_loss for e in history.epochs] == pytest.approx(curve)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 1
    assert best["best_val"] == pytest.approx(1.0)
    assert float(best["model"]["level"]) == 1.0
    assert history.best_epoch().epoch == 1
    assert MetricsHistory.load(tmp_path / "history.json").best_epoch().epoch == 1
    assert load_checkpoint(tmp_path / "last.pt")["best_val"] == pytest.approx(1.0)


# --- deterministic validation ----------------------------------------------------------------------------


def spectrograms(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.rand(n, 48, 32, generator=g), torch.rand(n, 48, 32, generator=g) * 2 - 1], dim=1)


def test_validation_gives_the_same_numbers_for_the_same_weights():
    """Defect: validation runs in train mode, so the VAE samples z and val_loss is noise."""
    torch.manual_seed(0)
    model = SpectrogramVAE(48, 32, latent_dim=8, width=8)
    model.train()  # as training leaves it
    loader = DataLoader(TensorDataset(spectrograms(4, 1)), batch_size=2)
    loss = CombinedLoss(LossConfig())
    first = validate_epoch(model, loader, loss_config=loss, epoch=5, total_epochs=10)
    torch.manual_seed(123)  # another RNG state must not change anything
    second = validate_epoch(model, loader, loss_config=loss, epoch=5, total_epochs=10)
    assert first == second
    # and the numbers are those of the mean latent, z = mu
    model.eval()
    with torch.no_grad():
        x = loader.dataset.tensors[0]
        mu, logvar = model.encode(x[:2])
        out = loss({"recon": model.decode(mu), "target": x[:2], "mu": mu, "logvar": logvar}, epoch=5, total_epochs=10)
        mu2, logvar2 = model.encode(x[2:])
        out2 = loss(
            {"recon": model.decode(mu2), "target": x[2:], "mu": mu2, "logvar": logvar2}, epoch=5, total_epochs=10
        )
    assert first["val_loss"] == pytest.approx((float(out["total_loss"]) + float(out2["total_loss"])) / 2, rel=1e-6)


def test_the_recorded_val_loss_is_reproducible_from_best_pt(tmp_path):
    """Defect as above, seen end to end: the val_loss train() recorded for best.pt cannot be reproduced."""
    torch.manual_seed(0)
    model = SpectrogramVAE(48, 32, latent_dim=8, width=8)
    train_loader = DataLoader(TensorDataset(spectrograms(4, 2)), batch_size=2)
    val_loader = DataLoader(TensorDataset(spectrograms(4, 3)), batch_size=2)
    history = train(
        model, train_loader, val_loader, LossConfig(), epochs=2, checkpoint_dir=tmp_path, collapse_threshold=0.0
    )
    best = load_checkpoint(tmp_path / "best.pt")
    fresh = SpectrogramVAE(48, 32, latent_dim=8, width=8)
    fresh.load_state_dict(best["model"])
    fresh.train()
    again = validate_epoch(fresh, val_loader, loss_config=LossConfig(), epoch=best["epoch"], total_epochs=2)
    assert again["val_loss"] == pytest.approx(history.epochs[best["epoch"]].val_loss, rel=1e-6)
    assert again["val_loss"] == pytest.approx(best["best_val"], rel=1e-6)


# --- the KL warm-up length -------------------------------------------------------------------------------

# The seed's warm-up lasts int(total_epochs * warmup_fraction) epochs: truncated, never rounded.
WARMUPS = [
    (12, 0.3, 3),  # 3.6 -> 3
    (7, 0.5, 3),  # 3.5 -> 3
    (20, 0.33, 6),  # 6.6 -> 6
    (9, 0.3, 2),  # 2.7 -> 2
]


@pytest.mark.parametrize("epochs,fraction,warmup", WARMUPS)
def test_kl_warmup_length_truncates_as_the_seed(epochs, fraction, warmup):
    """Defect: the warm-up length is rounded (12 epochs x 0.3 gives 4 warm-up epochs instead of 3)."""
    config = load_config(
        {"terms": {"kl": {"weight": {"schedule": "linear_warmup", "max": 0.02, "warmup_fraction": fraction}}}}
    )
    loss = CombinedLoss(config)
    expected = [0.02 * min(e / warmup, 1.0) for e in range(epochs)]
    assert [loss.weights(e, epochs)["kl"] for e in range(epochs)] == pytest.approx(expected)
    assert [get_kl_weight(e, epochs, fraction, 0.02) for e in range(epochs)] == pytest.approx(expected)
    assert loss.weights(warmup, epochs)["kl"] == 0.02  # full weight from the first epoch after the warm-up


# --- best epochs per segment -----------------------------------------------------------------------------

# A loss a thousand times smaller than the recipe: its epochs score far below any epoch under the recipe.
SMALL_LOSS = {
    "terms": {"stft": {"weight": 0.001}, "kl": {"weight": 0.0}},
    "groups": {"reconstruction": {"weight": 0.001}},
}


def tones(freqs: list[float], samples: int, sample_rate: int = 16000) -> torch.Tensor:
    t = torch.arange(samples) / sample_rate
    return torch.stack([0.3 * torch.sin(2 * math.pi * f * t) for f in freqs])


def write_wav(path: Path, signal_: torch.Tensor, sample_rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((signal_.numpy() * 32767).astype("<i2").tobytes())


def test_compare_reports_the_best_epoch_of_the_segment_best_pt_comes_from(tmp_path):
    """Defect: best_epoch() ignores segments, so after a --force-config resume compare names the old
    segment's best epoch (and value) while it loads the new segment's best.pt."""
    spec = SpectrogramConfig(mel_bins=64)  # compare infers these settings from the model's shapes
    specs = to_spectrogram(tones([220.0, 330.0, 440.0, 550.0], spec.samples), spec)
    loaders = (DataLoader(TensorDataset(specs[2:]), batch_size=2), DataLoader(TensorDataset(specs[:2]), batch_size=2))

    def vae() -> SpectrogramVAE:
        torch.manual_seed(0)
        return SpectrogramVAE(spec.bins, spec.frames, latent_dim=8, width=8)

    run = tmp_path / "r"
    train(vae(), *loaders, load_config(SMALL_LOSS), epochs=1, checkpoint_dir=run, collapse_threshold=0.0)
    history = train(
        vae(),
        *loaders,
        LossConfig(),
        epochs=3,
        checkpoint_dir=run,
        resume_from=run / "last.pt",
        new_segment="--force-config",
        collapse_threshold=0.0,
    )
    assert [s.start_epoch for s in history.segments] == [1]
    assert min(history.epochs, key=lambda e: e.val_loss).epoch == 0  # the small loss's epoch stays the minimum
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] >= 1  # best.pt is the new segment's

    clips = tmp_path / "held_out"
    clips.mkdir()
    for i, clip in enumerate(tones([260.0, 500.0], spec.samples)):
        write_wav(clips / f"{i}.wav", clip)
    table = markdown(compare_runs([run], clips, max_clips=2))  # what distill-loss compare prints
    row = re.search(rf"^\| r \| `{re.escape(str(run))}` \| (\d+) \| (\S+) \| (\S+) \|", table, re.M)
    assert row, table
    assert int(row.group(1)) == 3
    assert int(row.group(2)) == best["epoch"] + 1  # compare counts epochs from 1
    assert float(row.group(3)) == pytest.approx(best["best_val"], rel=1e-3)  # printed with 4 digits
    assert MetricsHistory.load(run / "history.json").best_epoch().epoch == best["epoch"]


# --- a balanced term with zero gradient ------------------------------------------------------------------


def test_a_balanced_term_with_exactly_zero_gradient_leaves_the_gradient_finite(sync_counter):
    """Defect: the balancer's epsilon outside the denominator; a zero-gradient term then divides 0 by a zero
    average and turns the whole gradient at the balanced input into NaN."""
    config = load_config(
        {
            "recipe": "none",
            "terms": {"mag_recon": {"weight": 2.0}, "if_recon": {"weight": 1.0}},
            "balancer": {"enabled": True},
        }
    )
    loss = CombinedLoss(config)
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 2, 8, 8, generator=g)
    ifreq = torch.rand(2, 8, 8, generator=g)
    for step in range(2):  # the first step (no average yet) and one with a zero average
        recon = torch.stack([target[:, 0], ifreq], dim=1).requires_grad_()  # magnitude exact: mag_recon at 0
        syncs = dict(sync_counter)
        out = loss({"recon": recon, "target": target})
        logs = loss.backward(out)
        assert sync_counter == syncs
        assert float(out["mag_recon_loss"].detach()) == 0.0
        assert torch.isfinite(recon.grad).all(), f"step {step}"
        # what remains is if_recon's gradient alone, scaled to its share (1/3) of a total norm of 1
        reference = recon.detach().requires_grad_()
        (g_if,) = torch.autograd.grad(loss.terms["if_recon"]({"recon": reference, "target": target}), reference)
        norm = torch.linalg.vector_norm(g_if.reshape(2, -1), dim=1).mean()
        torch.testing.assert_close(recon.grad, g_if / 3 / norm)
        assert float(logs["nonfinite"]) == 0.0
        assert float(logs["ratio_mag_recon"]) == 0.0 and float(logs["ratio_if_recon"]) == pytest.approx(1.0)


# --- a partial [terms.x] section -------------------------------------------------------------------------


def vae_recipe() -> dict:
    """The data LossConfig() starts from. Its values all equal the term classes' defaults, so a test that
    checks a merge first makes one differ."""
    from distill_core.seed.recipe import VAE

    return VAE.terms


def test_a_partial_term_section_keeps_the_recipes_other_values(tmp_path, monkeypatch):
    """Defect: a file's [terms.x] section replaces the recipe's section for x instead of merging key by key,
    so the recipe's other values for x fall back to the class defaults."""
    from distill_core.loss import structure as loss_config

    terms = vae_recipe()
    monkeypatch.setitem(terms["kl"], "free_bits", 0.25)
    monkeypatch.setattr(loss_config, "_DEFAULT", None)  # LossConfig() caches the recipe it structured
    monkeypatch.setitem(terms["stft"], "weight", 0.5)
    kl_class, stft_class = type(LossConfig().terms["kl"]), type(LossConfig().terms["stft"])
    assert kl_class().free_bits != 0.25 and stft_class().weight != 0.5  # the recipe now differs from the class
    assert LossConfig().terms["kl"].free_bits == 0.25 and LossConfig().terms["stft"].weight == 0.5

    path = tmp_path / "loss.toml"
    path.write_text(
        "[terms.kl]\nweight = 0.5\n\n[terms.stft]\nfft_sizes = [256, 512, 1024]\n"
        "hop_sizes = [64, 128, 256]\nwin_lengths = [256, 512, 1024]\n"
    )
    config = load_config(path)
    kl, stft = config.terms["kl"], config.terms["stft"]
    assert kl.weight == 0.5 and kl.free_bits == 0.25
    assert list(stft.fft_sizes) == [256, 512, 1024] and stft.weight == 0.5
    assert CombinedLoss(config).weights(0, 10)["stft"] == 0.5


# --- the durable save ------------------------------------------------------------------------------------


def saves_history(path: Path) -> None:
    MetricsHistory().save(path)


def saves_checkpoint(path: Path) -> None:
    save_checkpoint(path, {"epoch": 0, "model": {"w": torch.ones(3)}})


@pytest.mark.parametrize("save", [saves_history, saves_checkpoint], ids=["history", "checkpoint"])
def test_the_file_itself_is_fsynced_complete_before_it_is_renamed(tmp_path, monkeypatch, save):
    """Defect: only the folder is fsynced (or the file after its rename); a power cut can then leave a
    renamed file whose data never reached the disk."""
    events: list[tuple] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", info.st_ino, stat.S_ISREG(info.st_mode), info.st_size))
        return real_fsync(fd)

    def renamed(real):
        def call(src, dst, *args, **kwargs):
            events.append(("rename", os.stat(src).st_ino, Path(dst)))
            return real(src, dst, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", renamed(real_replace))
    monkeypatch.setattr(os, "rename", renamed(real_rename))
    path = tmp_path / "saved"
    save(path)
    renames = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == path]
    assert len(renames) == 1, events
    inode = events[renames[0]][1]
    synced = [e for e in events[: renames[0]] if e[0] == "fsync" and e[1] == inode]
    assert synced, f"the temp file was not fsynced before its rename: {events}"
    assert synced[-1][2] and synced[-1][3] == path.stat().st_size  # a regular file, already complete
    assert path.stat().st_ino == inode


# --- group member weights --------------------------------------------------------------------------------

GROUP = """
[terms.mag_recon]
weight = 1.5

[groups.reconstruction]
weight = 0.3
magnitude_weight = 2.0
if_weight = 0.25
"""


def test_member_weights_other_than_one_scale_the_group_sum_its_fallback_and_its_gradient(tmp_path, sync_counter):
    """Defect: a group's member weights are dropped (or applied twice) in its sum, the fallback or the gradient."""
    path = tmp_path / "loss.toml"
    path.write_text(GROUP)
    loss = CombinedLoss(load_config(path))
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 2, 48, 32, generator=g)  # 1536 magnitudes: more than the stft term's 2048 // 2
    recon = torch.rand(2, 2, 48, 32, generator=g).requires_grad_()
    mu, logvar = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    out = loss({"recon": recon, "target": target, "mu": mu, "logvar": logvar}, epoch=9, total_epochs=10)
    group = 0.3 * (2.0 * 1.5 * out["mag_recon_loss"] + 0.25 * 1.0 * out["if_recon_loss"])
    torch.testing.assert_close(out["recon_loss"], group)
    torch.testing.assert_close(out["total_loss"], out["stft_loss"] + group + 0.01 * out["kl_loss"])
    effective = loss.effective_weights(loss.weights(9, 10))
    assert effective["mag_recon"] == pytest.approx(0.9) and effective["if_recon"] == pytest.approx(0.075)

    # a non-finite total falls back to the group: its value and its gradient, member weights included
    nan_latent = torch.full_like(logvar, math.nan)
    syncs = dict(sync_counter)
    out = loss({"recon": recon, "target": target, "mu": mu, "logvar": nan_latent}, epoch=9, total_epochs=10)
    out["total_loss"].backward()
    assert sync_counter == syncs
    assert float(out["nonfinite"]) == 1.0
    torch.testing.assert_close(out["total_loss"], out["recon_loss"])
    reference = recon.detach().requires_grad_()
    batch = {"recon": reference, "target": target}
    expected = 0.3 * (3.0 * loss.terms["mag_recon"](batch) + 0.25 * loss.terms["if_recon"](batch))
    (grad,) = torch.autograd.grad(expected, reference)
    torch.testing.assert_close(out["total_loss"], expected.detach())
    torch.testing.assert_close(recon.grad, grad)
