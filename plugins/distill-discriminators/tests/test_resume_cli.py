"""``distill-loss train --resume RUN/last.pt`` of an adversarial vocoder run whose saved discriminator state is
damaged (D's optimizer state cut out, a D weight of another shape): the real CLI, in its own process, stops
with one line naming the term and the key, writes nothing into the run folder, and shows no traceback
(issue 36, item 9)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CLI = Path(sys.executable).with_name("distill-loss")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TERM = "terms.adversarial.adversarial"  # the adversarial term's entries in the checkpoint's loss state
CONFIG = """\
recipe = "none"

[terms.mel]
sample_rate = 16000
inputs = { recon = "recon_wave", target = "target_wave" }

[terms.adversarial]
preset = "dac"
width = 0.0625
inputs = { recon = "recon_wave", target = "target_wave" }
discriminators = [
  { kind = "mpd", options = { periods = [2, 3], always_pad = true, normalize_input = true } },
]
"""


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One epoch of the vocoder with DAC's MPD (two periods, width 1/16) beside the mel loss, via the CLI."""
    root = tmp_path_factory.mktemp("adv")
    (root / "adv.toml").write_text(CONFIG, encoding="utf-8")
    done = cli(
        "train",
        "adv.toml",
        "--model",
        "vocoder",
        "--epochs",
        1,
        "--clips",
        2,
        "--batch-size",
        2,
        "--threads",
        1,
        "--no-progress",
        "--no-tensorboard",
        "--out",
        "runs",
        "--name",
        "adv",
        cwd=root,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "runs" / "adv"


def damaged_copy(trained: Path, tmp_path: Path, damage) -> tuple[Path, dict[str, bytes]]:
    """A copy of the run whose last.pt went through ``damage`` (on its loaded dict), and its files' bytes."""
    run = tmp_path / "runs" / "adv"
    shutil.copytree(trained, run)
    state = torch.load(run / "last.pt", weights_only=True)
    damage(state["loss"])
    torch.save(state, run / "last.pt")
    return run, {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def resume_refused(run: Path, files: dict[str, bytes], *more: object) -> str:
    """Resume the run by its last.pt (and ``more`` options); the one error line, after checking nothing in the
    folder changed (run.json included: a resume that changes an option and is refused leaves the run as it was)."""
    done = cli("train", "--resume", run / "last.pt", "--no-progress", *more, cwd=run.parent.parent)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == files
    return line


@pytest.mark.parametrize("more", [(), ("--epochs", 2, "--change-options")], ids=["as-run", "changed-options"])
def test_a_resume_without_ds_optimizer_state_names_the_term_and_the_key(trained, tmp_path, more):
    def cut_optimizer(loss: dict) -> None:
        del loss[f"{TERM}._extra_state"]["optimizer"]

    run, files = damaged_copy(trained, tmp_path, cut_optimizer)
    assert resume_refused(run, files, *more) == (
        f"error: {run / 'last.pt'}: cannot restore the loss's state: {TERM}: the saved D state "
        f"{TERM}._extra_state has no 'optimizer' (it holds ['discriminators', 'fingerprint', 'scheduler']); "
        "expected what Adversarial.state_dict() saves: fingerprint, discriminators, optimizer, scheduler"
    )


def test_a_resume_with_a_d_weight_of_another_shape_names_the_term_the_key_and_both_shapes(trained, tmp_path):
    key = f"{TERM}.discriminators.0.discriminators.1.convs.2.bias"

    def reshape_weight(loss: dict) -> None:
        assert loss[key].shape == (32,)
        loss[key] = torch.zeros(3)

    run, files = damaged_copy(trained, tmp_path, reshape_weight)
    assert resume_refused(run, files) == (
        f"error: {run / 'last.pt'}: cannot restore the loss's state: {TERM}: saved {key} has shape [3], this "
        "discriminator's is [32]: the state was made for other discriminator options"
    )


def test_the_undamaged_run_resumes(trained, tmp_path):
    run = tmp_path / "runs" / "adv"
    shutil.copytree(trained, run)
    done = cli("train", "--resume", run / "last.pt", "--epochs", 2, "--change-options", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1
