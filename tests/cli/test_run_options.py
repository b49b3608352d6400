"""A run folder remembers how it was started (run.json): the printed resume line, ``--resume RUN/last.pt`` alone,
continues the same run bit for bit in real processes; an option given again that differs is refused in one
line naming it unless ``--change-options``; a folder from before run.json still resumes."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from distill_core.cli.main import main
from distill_core.training.metrics import MetricsHistory

CLI = [sys.executable, "-m", "distill_core.cli.main"]
# Non-default options everywhere: a resume that fell back to a default would train another run.
OPTIONS = [
    *("--epochs", "3", "--clips", "8", "--batch-size", "4", "--seed", "7", "--threads", "1"),
    *("--no-progress", "--no-tensorboard"),
]


def start(out: Path, name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "train", *OPTIONS, "--out", str(out), "--name", name, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupted(out: Path, name: str, *extra: str) -> str:
    """A run stopped by SIGTERM once its first epoch is saved; its stderr."""
    proc = start(out, name, *extra)
    deadline = time.time() + 240
    while not (out / name / "last.pt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert torch.load(out / name / "last.pt", weights_only=True)["epoch"] < 2  # it stopped before the end
    return err


def same_run(a: Path, b: Path) -> None:
    """Both folders' last.pt hold the same epoch, weights, optimizer and RNG state, and equal histories."""
    ours, theirs = (torch.load(f / "last.pt", weights_only=True) for f in (a, b))
    assert ours["epoch"] == theirs["epoch"] == 2
    assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in theirs["model"])
    moments = [(x, y) for x, y in zip(ours["optimizer"]["state"].values(), theirs["optimizer"]["state"].values())]
    assert moments and all(torch.equal(x[k], y[k]) for x, y in moments for k in y)
    assert torch.equal(ours["rng"]["torch"], theirs["rng"]["torch"])
    histories = [MetricsHistory.load(f / "history.json").epochs for f in (a, b)]
    assert [(e.train_loss, e.val_loss, e.components) for e in histories[0]] == [
        (e.train_loss, e.val_loss, e.components) for e in histories[1]
    ]


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("model", ["vae", "vocoder"])
def test_the_printed_resume_line_alone_continues_the_run_bit_for_bit(tmp_path, model):
    extra = ("--model", "vocoder") if model == "vocoder" else ()
    straight = start(tmp_path, "straight", *extra)
    err = interrupted(tmp_path, "cut", *extra)
    line = err.strip().splitlines()[-1]
    last = tmp_path / "cut" / "last.pt"
    assert line == f"interrupted; resume with: distill-loss train --resume {last} --no-progress", err
    old = tmp_path / "old"  # the interrupted folder as an earlier version would have left it: no run.json
    shutil.copytree(tmp_path / "cut", old)
    (old / "run.json").unlink()
    given = ["--clips", "8", "--batch-size", "4", "--seed", "7", "--threads", "1", "--no-progress", "--no-tensorboard"]
    older = (
        subprocess.Popen(
            [*CLI, "train", "--resume", str(old / "last.pt"), *given],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if model == "vae"
        else None
    )
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[:2] == ["distill-loss", "train"]
    resumed = subprocess.run([*CLI, *command[1:]], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert straight.wait(timeout=300) == 0, straight.communicate()
    same_run(tmp_path / "cut", tmp_path / "straight")
    kept = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert kept["model"] == model and kept["changed"] == []
    assert {k: kept["options"][k] for k in ("epochs", "clips", "batch_size", "seed", "threads", "data")} == {
        "epochs": 3,
        "clips": 8,
        "batch_size": 4,
        "seed": 7,
        "threads": 1,
        "data": None,
    }
    if model == "vocoder":
        return
    # the older folder resumed with what was given, the rest known from its files
    assert older is not None
    out, err = older.communicate(timeout=300)
    assert older.returncode == 0, err
    assert (
        f"{tmp_path / 'old'}: no run.json (a run started before the options were kept); continuing with "
        "--epochs 3 (its checkpoint's), --mel-bins none (its spectrogram.json's), --data none (the synthetic "
        "corpus) --device cpu (as given, or the defaults); run.json keeps them from now on"
    ) in out
    same_run(tmp_path / "old", tmp_path / "straight")
    assert json.loads((tmp_path / "old" / "run.json").read_text())["options"]["epochs"] == 3


TOY = ["--epochs", "1", "--clips", "4", "--batch-size", "2", "--no-progress", "--no-tensorboard"]


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished 1-epoch run, made once by the CLI in this process."""
    out = tmp_path_factory.mktemp("runs")
    before = signal.getsignal(signal.SIGTERM)
    result = run("train", *TOY, "--out", out, "--name", "done")
    signal.signal(signal.SIGTERM, before)
    assert result.exit_code == 0, result.output
    return out / "done"


@pytest.fixture
def finished(made, tmp_path):
    """A private copy of the finished run; train's SIGTERM handler is not left behind."""
    before = signal.getsignal(signal.SIGTERM)
    shutil.copytree(made, tmp_path / "done")
    yield tmp_path / "done"
    signal.signal(signal.SIGTERM, before)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_differing_option_is_refused_in_one_line_and_change_options_records_it(finished):
    last = finished / "last.pt"
    before = files(finished)
    refused = run("train", "--resume", last, "--epochs", "3")
    assert refused.exit_code == 2 and refused.stderr == (
        f"error: --epochs 3 differs from the run's 1 ({finished / 'run.json'}); pass --change-options to "
        "continue the run with it, or leave --epochs out to keep the run's\n"
    )
    refused = run("train", "--resume", last, "--epochs", "3", "--batch-size", "3", "--seed", "0")  # seed: the same
    assert refused.exit_code == 2 and refused.stderr.startswith(
        "error: --epochs 3 differs from the run's 1, --batch-size 3 from its 2 ("
    ), refused.stderr
    assert "leave them out to keep the run's" in refused.stderr
    assert files(finished) == before  # nothing written

    changed = run("train", "--resume", last, "--epochs", "2", "--clips", "4", "--change-options")
    assert changed.exit_code == 0, (changed.output, changed.exception)
    assert "options changed (--change-options) from epoch 2 on: --epochs: 1 -> 2" in changed.stdout
    kept = json.loads((finished / "run.json").read_text())
    assert kept["options"]["epochs"] == 2 and kept["changed"] == [{"epoch": 1, "changes": ["--epochs: 1 -> 2"]}]
    assert [e.epoch for e in MetricsHistory.load(finished / "history.json").epochs] == [0, 1]


@pytest.mark.slow
def test_a_resume_into_another_folder_takes_the_runs_options(finished):
    result = run("train", "--resume", finished / "last.pt", "--name", "fork", "--epochs", "2", "--change-options")
    assert result.exit_code == 0, (result.output, result.exception)
    fork = finished.parent / "fork"
    kept = json.loads((fork / "run.json").read_text())
    assert (kept["options"]["clips"], kept["options"]["batch_size"], kept["options"]["tensorboard"]) == (4, 2, False)
    assert [e.epoch for e in MetricsHistory.load(fork / "history.json").epochs] == [0, 1]
    assert not list(fork.glob("events.out.tfevents*"))  # --no-tensorboard is remembered too


def test_a_damaged_run_json_is_one_line_naming_it(finished):
    (finished / "run.json").write_text('{"format": 1, "model": "vae"}')
    result = run("train", "--resume", finished / "last.pt")
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {finished / 'run.json'}: invalid run settings")
    assert len(result.stderr.splitlines()) == 1


def test_threads_is_an_option_of_train():
    result = run("train", "--threads", "0")
    assert result.exit_code == 2 and "--threads" in result.output and "0" in result.output


ADVERSARIAL = """\
[terms.adversarial]
preset = "dac"
width = 0.125
weight = 0.1
inputs = { recon = "recon_wave", target = "target_wave" }
discriminators = [{ kind = "mpd", options = { periods = [2, 3], always_pad = true, normalize_input = true } }]
"""


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_forced_config_warns_in_one_line_with_the_diff_and_no_source_line(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    config = tmp_path / "gan.toml"
    config.write_text(ADVERSARIAL)
    assert run("train", config, *TOY, "--out", tmp_path, "--name", "gan").exit_code == 0
    config.write_text(ADVERSARIAL.replace("periods = [2, 3]", "periods = [2, 5]"))
    last = tmp_path / "gan" / "last.pt"
    refused = run("train", config, "--resume", last)
    assert refused.exit_code == 2 and refused.stderr == (
        f"error: {last}: the loss differs from the run's: terms.adversarial.discriminators[0].options.periods: "
        f"[2, 3] -> [2, 5]; resume with the run's config ({tmp_path / 'gan' / 'config.toml'}), or pass "
        "--force-config to accept the change and start a new best-tracking segment\n"
    )
    forced = run(
        "train", config, "--resume", last, "--force-config", "--epochs", "2", "--change-options", "--no-progress"
    )
    signal.signal(signal.SIGTERM, before)
    assert forced.exit_code == 0, (forced.output, forced.exception)
    assert forced.stderr == (
        f"warning: {last}: with the changed loss, these parts start from their built state: 'adversarial' "
        "(discriminators[0].options.periods: [2, 3] -> [2, 5])\n"
    )
