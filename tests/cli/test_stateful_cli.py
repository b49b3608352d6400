"""`distill-loss train` with the VAE recipe plus the adversarial term on the batch's waveform views
(``recon_wave`` / ``target_wave``, the inverse STFT of the spectrograms): two epochs from a config, and a
run cut after one epoch and resumed equals them bit for bit; ``--seed`` covers the discriminator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from distill_core.cli.main import main
from distill_core.training.metrics import MetricsHistory

# The recipe with a constant KL weight (its default warm-up depends on --epochs, which the cut run changes),
# and DAC's discriminator setup at width 1/8 with two periods and two resolutions on the 8064-sample clips.
CONFIG = """\
[terms.kl]
weight = 0.01

[terms.adversarial]
preset = "dac"
width = 0.125
weight = 0.1
inputs = { recon = "recon_wave", target = "target_wave" }
discriminators = [
  { kind = "mpd", options = { periods = [2, 3], always_pad = true, normalize_input = true } },
  { kind = "mrd", options = { fft_sizes = [256, 128], padding = "dac", normalize_input = true } },
]
"""
FIGURES = {"adversarial_disc_loss", "adversarial_real_score", "adversarial_fake_score"}


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def train_cli(tmp_path: Path, *args: str) -> None:
    result = CliRunner().invoke(
        main,
        [
            "train",
            *args,
            "--clips",
            "6",
            "--batch-size",
            "2",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--no-tensorboard",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_vae_with_an_adversarial_term_trains_from_a_config_and_resumes_bit_exact(tmp_path):
    config = tmp_path / "vae_adversarial.toml"
    config.write_text(CONFIG)
    train_cli(tmp_path, str(config), "--epochs", "2", "--name", "straight", "--seed", "0")
    train_cli(tmp_path, str(config), "--epochs", "1", "--name", "cut", "--seed", "0")
    # the first epoch of both runs agrees: the seed was set before the loss (and its discriminator) was built
    straight, cut = (MetricsHistory.load(tmp_path / name / "history.json") for name in ("straight", "cut"))
    assert (
        cut.epochs[0].metrics == straight.epochs[0].metrics
        and cut.epochs[0].components == straight.epochs[0].components
    )
    train_cli(
        tmp_path, "--epochs", "2", "--change-options", "--name", "cut", "--resume", str(tmp_path / "cut" / "last.pt")
    )

    ours, theirs = (torch.load(tmp_path / name / "last.pt", weights_only=True) for name in ("cut", "straight"))
    assert ours["epoch"] == theirs["epoch"] == 1
    for entry in ("model", "loss"):
        assert ours[entry].keys() == theirs[entry].keys()
        tensors = [k for k, v in theirs[entry].items() if isinstance(v, torch.Tensor)]
        assert [k for k in tensors if not torch.equal(ours[entry][k], theirs[entry][k])] == [], entry
    assert (
        ours["loss"]["terms.adversarial.adversarial._extra_state"]["optimizer"]["state"].keys()
        == theirs["loss"]["terms.adversarial.adversarial._extra_state"]["optimizer"]["state"].keys()
    )
    for a, b in zip(
        ours["loss"]["terms.adversarial.adversarial._extra_state"]["optimizer"]["state"].values(),
        theirs["loss"]["terms.adversarial.adversarial._extra_state"]["optimizer"]["state"].values(),
    ):
        assert all(torch.equal(a[k], b[k]) for k in b)  # D's AdamW moments and step counts

    resumed, straight = (MetricsHistory.load(tmp_path / name / "history.json") for name in ("cut", "straight"))
    assert [(e.components, e.val_components, e.metrics) for e in resumed.epochs] == [
        (e.components, e.val_components, e.metrics) for e in straight.epochs
    ]
    last = straight.epochs[-1]
    assert set(last.metrics) == FIGURES and {"stft_loss", "kl_loss"} <= set(last.components)
    assert any(k.startswith("adversarial") for k in last.components)
    assert (tmp_path / "straight" / "losses.png").read_bytes()[:4] == b"\x89PNG"
