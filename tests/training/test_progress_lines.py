"""The run's console output: a progress bar on a terminal; on anything else (CI, nohup, | tee) one plain line per
epoch, and with DISTILL_PROGRESS_SECONDS=N a step line at most every N seconds (issue 36, item 23)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from distill_core.training.metrics import EpochMetrics, StepMetrics
from distill_core.training.progress import EVERY_ENV, ConsoleProgress, epoch_line, step_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def step(epoch: int, index: int, total: int = 7) -> StepMetrics:
    return StepMetrics(
        epoch, index, total, 1.5 - 0.1 * index, 0.5, 0.1, 0.01, 1e-3, 0.02, components={"stft_loss": 0.4}
    )


def epoch(index: int, total: int = 2) -> EpochMetrics:
    return EpochMetrics(index, total, 1.2, 1.3, 0.4, 0.1, 0.2, 0.08, 1e-3, 1.0, 2.0, val_components={"stft_loss": 0.5})


def two_epochs_of_seven_steps(display: ConsoleProgress) -> None:
    for e in range(2):
        for s in (1, 3, 5, 6):  # logged every 2 steps, and the last
            display(step(e, s))
        display(epoch(e))
    display.close()


def test_a_non_terminal_gets_one_plain_line_per_epoch_and_nothing_else():
    bar, lines = io.StringIO(), io.StringIO()
    two_epochs_of_seven_steps(ConsoleProgress(14, stream=bar, lines=lines))
    assert bar.getvalue() == ""
    assert lines.getvalue() == f"{epoch_line(epoch(0))}\n{epoch_line(epoch(1))}\n"
    assert "\r" not in lines.getvalue()


def test_a_terminal_keeps_the_bar():
    bar, lines = Terminal(), io.StringIO()
    two_epochs_of_seven_steps(ConsoleProgress(14, stream=bar, lines=lines))
    drawn = bar.getvalue()
    assert "\r" in drawn and "14/14" in drawn and "epoch 2" in drawn and "stft=0.4" in drawn
    assert epoch_line(epoch(0)) in lines.getvalue() and epoch_line(epoch(1)) in lines.getvalue()


def test_no_progress_on_a_terminal_shows_the_epoch_lines_only():
    bar, lines = Terminal(), io.StringIO()
    two_epochs_of_seven_steps(ConsoleProgress(14, enabled=False, stream=bar, lines=lines))
    assert bar.getvalue() == "" and len(lines.getvalue().splitlines()) == 2


def test_every_n_seconds_a_step_line_at_most():
    times = iter([0.0, 3.0, 6.0, 10.0, 12.0, 25.0, 26.0, 27.0])
    bar, lines = io.StringIO(), io.StringIO()
    two_epochs_of_seven_steps(ConsoleProgress(14, stream=bar, lines=lines, every=10.0, clock=lambda: next(times)))
    # steps logged at t = 0, 3, 6, 10 (epoch 1) and 12, 25, 26, 27 (epoch 2): lines at 0, 10 and 25
    assert bar.getvalue().splitlines() == [step_line(step(0, 1)), step_line(step(0, 6)), step_line(step(1, 3))]
    assert step_line(step(0, 1)) == "epoch 1 step 2/7: total 1.4, stft 0.4"
    assert len(lines.getvalue().splitlines()) == 2


def test_the_environment_sets_the_interval_and_a_bad_value_is_warned_of(monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "30")
    assert ConsoleProgress(1, stream=io.StringIO()).every == 30.0
    for bad in ("soon", "0", "-5", "nan", "inf"):
        monkeypatch.setenv(EVERY_ENV, bad)
        with pytest.warns(UserWarning, match=rf"^{EVERY_ENV}='{bad}': expected a number of seconds above 0"):
            assert ConsoleProgress(1, stream=io.StringIO()).every is None
    monkeypatch.delenv(EVERY_ENV)
    assert ConsoleProgress(1, stream=io.StringIO()).every is None


@pytest.mark.e2e
def test_train_piped_to_a_file_writes_one_line_per_epoch(tmp_path):
    """Seven steps an epoch, two epochs, stdout and stderr to pipes: not a terminal."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "distill_core.cli.main",
            "train",
            "--out",
            str(tmp_path),
            "--epochs",
            "2",
            "--clips",
            "14",
            "--batch-size",
            "2",
            "--no-tensorboard",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = [line for line in (done.stdout + done.stderr).replace("\r", "\n").splitlines() if line.strip()]
    epochs = [line for line in shown if line.startswith("epoch ") and ": train " in line]
    assert len(epochs) == 2
    assert [line for line in shown if "step" in line and "it/s" in line or "%|" in line] == []  # no bar frames
