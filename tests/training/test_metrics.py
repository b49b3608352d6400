"""History persistence: golden old files, newer files, corrupt files, and atomic saves under a kill."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from distill_core.training.metrics import EpochMetrics, HistoryError, MetricsHistory, StepMetrics

DATA = Path(__file__).parents[1] / "data"


def sample_history(n_epochs=3) -> MetricsHistory:
    h = MetricsHistory()
    for e in range(n_epochs):
        h.add_step(
            StepMetrics(
                e,
                5,
                10,
                2.0 - e,
                1.0,
                3.0,
                0.01 * e,
                1e-3,
                0.02,
                stft_loss=0.5,
                mag_recon_loss=0.2,
                if_recon_loss=0.1,
                components={"sisdr_loss": -3.0 + e},
            )
        )
        h.add_epoch(
            EpochMetrics(
                e,
                n_epochs,
                2.0 - e,
                [1.5, 1.2, 1.3][e % 3],
                0.8,
                3.0,
                2.5,
                0.1,
                1e-3,
                1.0,
                1.0,
                val_stft_loss=0.6 - 0.1 * e,
                val_components={"stft_loss": 0.6 - 0.1 * e, "sisdr_loss": -2.0 - e},
                components={"stft_loss": 0.7 - 0.1 * e, "sisdr_loss": -1.0 - e},
                weights={"stft": 1.0, "sisdr": 0.1 * e},
            )
        )
    return h


def test_golden_old_format_loads_with_defaults():
    h = MetricsHistory.load(DATA / "history_v0.json")
    assert len(h.steps) == 1 and len(h.epochs) == 2
    assert h.steps[0].stft_loss == 0.0 and h.steps[0].components == {"kl_loss": 5.0}
    assert h.epochs[1].val_if_recon_loss == 0.0 and h.epochs[1].val_loss == 0.95
    assert h.epochs[1].val_components == {"kl_loss": 3.0}  # the only term that file ever recorded
    assert h.get_best_epoch() == 1 and h.best_epoch().epoch == 1


def test_newer_fields_are_ignored_with_one_warning(tmp_path):
    data = sample_history().to_dict()
    for s in data["step_metrics"]:
        s["gradient_norm"] = 1.0
    data["epoch_metrics"][0]["val_perceptual_loss"] = 0.3
    p = tmp_path / "h.json"
    p.write_text(json.dumps(data))
    with pytest.warns(UserWarning) as record:
        h = MetricsHistory.load(p)
    assert len(record) == 1
    message = str(record[0].message)
    assert "epoch_metrics.val_perceptual_loss" in message and "step_metrics.gradient_norm" in message
    assert h == sample_history()


def test_curves_best_epoch_and_round_trip(tmp_path):
    h = sample_history()
    curves = h.get_loss_curves()
    assert curves["val_loss"] == [1.5, 1.2, 1.3]
    assert curves["val_stft_loss"] == pytest.approx([0.6, 0.5, 0.4])
    assert curves["val_sisdr_loss"] == [-2.0, -3.0, -4.0]  # a plugin term gets its own curve
    assert curves["train_sisdr_loss"] == [-1.0, -2.0, -3.0]
    assert curves["val_losses"] == curves["val_loss"] and curves["kl_losses"] == [3.0, 3.0, 3.0]
    assert "val_if_recon_loss" not in curves  # not configured: absent, not 0.0
    assert h.get_best_epoch() == 1 and h.best_epoch().epoch == 1
    assert MetricsHistory.from_dict(h.to_dict()) == h
    assert MetricsHistory.load(h.save(tmp_path / "h.json")) == h
    assert MetricsHistory().best_epoch() is None and MetricsHistory().get_best_epoch() == 0


def test_truncated_file_names_file_and_position(tmp_path):
    p = tmp_path / "h.json"
    sample_history().save(p)
    p.write_text(p.read_text()[:200])
    with pytest.raises(HistoryError, match=rf"{p}: truncated or corrupt JSON at line \d+, column \d+ \(char \d+\)"):
        MetricsHistory.load(p)
    p.write_text('{"epochs": [{"epoch": "one"}]}')
    with pytest.raises(HistoryError, match=rf"{p}: epochs\[0\]\.total_epochs: missing"):
        MetricsHistory.load(p)
    entry = sample_history(1).to_dict()["epoch_metrics"][0]
    p.write_text(json.dumps({"epoch_metrics": [{**entry, "epoch": "one"}]}))
    with pytest.raises(HistoryError, match=rf"{p}: invalid history: epoch_metrics\[0\]\.epoch"):
        MetricsHistory.load(p)


def test_kill_mid_save_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "history.json"
    sample_history(1).save(path)
    before = path.read_bytes()
    marker = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from distill_core.training import metrics

        real_fsync = os.fsync
        def slow_fsync(fd):
            Path({str(marker)!r}).write_text("in fsync")
            time.sleep(60)  # killed here: temp file written, not yet renamed
        os.fsync = slow_fsync
        h = metrics.MetricsHistory()
        for e in range(2000):
            h.add_epoch(metrics.EpochMetrics(e, 2000, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1e-3, 0.0, 0.0))
        h.save({str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the writer never reached the middle of its save"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_bytes() == before
    assert MetricsHistory.load(path) == sample_history(1)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".history.json.")]
    assert leftovers, "the kill should have left the partial temp file, never the real one"
