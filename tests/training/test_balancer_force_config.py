"""The balancer's running averages on a resume (issue 36, item 19): restored when the loss is the run's; after an
accepted config change (``--force-config``, a new best-tracking segment) they start afresh, as a freshly built
balancer's, since they belong to the old loss. Through the CLI in its own process, and through the functions
its resume calls (``check_resume``, then ``restore_loss_state``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch

from distill_core import CombinedLoss, load_config
from distill_core.training.loss_state import restore_loss_state
from distill_core.training.model import SpectrogramVAE
from distill_core.training.resume import check_resume
from distill_core.training.spectrogram import SpectrogramConfig

CLI = Path(sys.executable).with_name("distill-loss")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CONFIG = "[balancer]\nenabled = true\n\n[terms.kl]\nweight = 0.01\n"  # the VAE recipe, balanced; a constant KL weight
CHANGED = CONFIG + "\n[terms.stft]\nweight = 0.5\n"  # the same balanced terms, one weight changed
DECAY = 0.999  # BalancerConfig's ema_decay
STEPS = 2  # per epoch: of 8 clips, 3 validate and 5 train, in batches of 4


def cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


def counts(steps: int) -> torch.Tensor:
    """ema_count after ``steps`` steps from a fresh balancer: n <- decay * n + 1."""
    return torch.full((3,), sum(DECAY**i for i in range(steps)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One epoch of the demo VAE with the balancer on, through the CLI."""
    root = tmp_path_factory.mktemp("balanced")
    (root / "bal.toml").write_text(CONFIG, encoding="utf-8")
    args = ["--epochs", 1, "--clips", 8, "--batch-size", 4, "--threads", 1, "--no-progress", "--no-tensorboard"]
    done = cli("train", "bal.toml", *args, "--out", "runs", "--name", "bal", cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    run = root / "runs" / "bal"
    balancer = {k: v for k, v in torch.load(run / "last.pt", weights_only=True)["loss"].items() if "balancer" in k}
    assert list(balancer) == ["balancer.ema_sum", "balancer.ema_count"]
    torch.testing.assert_close(balancer["balancer.ema_count"], counts(STEPS))
    assert bool((balancer["balancer.ema_sum"] > 0).all())
    return run


def copy_of(trained: Path, tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "bal"
    shutil.copytree(trained, run)
    return run


def saved_balancer(run: Path) -> dict[str, torch.Tensor]:
    loss = torch.load(run / "last.pt", weights_only=True)["loss"]
    return {k.removeprefix("balancer."): v for k, v in loss.items() if k.startswith("balancer.")}


@pytest.mark.parametrize("accept", [[], ["--force-config"]], ids=["as-run", "force-config-without-a-change"])
def test_a_resume_of_the_same_loss_continues_the_averages(trained, tmp_path, accept):
    run = copy_of(trained, tmp_path)
    args = ["--resume", run / "last.pt", *accept, "--epochs", 2, "--change-options", "--no-progress"]
    done = cli("train", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    torch.testing.assert_close(saved_balancer(run)["ema_count"], counts(2 * STEPS))  # epoch 1's steps, then 2's


def test_a_resume_with_a_changed_config_starts_the_averages_afresh(trained, tmp_path):
    run = copy_of(trained, tmp_path)
    (tmp_path / "changed.toml").write_text(CHANGED, encoding="utf-8")
    args = ["changed.toml", "--resume", run / "last.pt", "--force-config", "--epochs", 2, "--change-options"]
    done = cli("train", *args, "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    segments = json.loads((run / "history.json").read_text(encoding="utf-8"))["distill"]["segments"]
    assert segments == [{"start_epoch": 1, "reason": "--force-config: terms.stft.weight: 1.0 -> 0.5"}]
    torch.testing.assert_close(saved_balancer(run)["ema_count"], counts(STEPS))  # epoch 2's steps alone


@pytest.mark.parametrize("config, changed", [(CONFIG, False), (CHANGED, True)], ids=["same", "changed"])
def test_restore_after_the_resume_check_resets_the_balancer_only_on_a_change(trained, config, changed):
    """What ``distill-loss train --resume`` runs before the first step: check_resume, then restore_loss_state."""
    spec = SpectrogramConfig()
    loss = CombinedLoss(load_config(tomllib.loads(config)))
    resume = check_resume(
        trained / "last.pt",
        SpectrogramVAE(spec.bins, spec.frames),
        loss,
        accept=True,
        how_to_accept="--force-config",
    )
    assert resume.changes == (["terms.stft.weight: 1.0 -> 0.5"] if changed else [])
    fresh = CombinedLoss(load_config(tomllib.loads(config))).balancer.state_dict()
    assert list(fresh) == ["ema_sum", "ema_count"] and all(not v.any() for v in fresh.values())  # as built: zeros
    restore_loss_state(loss, resume.state, changed=changed, source=trained / "last.pt")
    expected = fresh if changed else saved_balancer(trained)
    got = loss.balancer.state_dict()
    assert list(got) == list(expected) and all(torch.equal(got[k], expected[k]) for k in expected)
