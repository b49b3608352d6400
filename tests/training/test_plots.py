"""losses.png: a panel per configured term with train and val, schedules apart, log axes, several runs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import attrs
import pytest

from distill_core.training.metrics import EpochMetrics, MetricsHistory, StepMetrics
from distill_core.training.plots import draw, schedule_curves, term_curves

PER_TERM = ("components", "weights", "balancer")
if set(PER_TERM) <= {f.name for f in dataclasses.fields(EpochMetrics)}:
    Epoch = EpochMetrics
else:  # the per-term train values, weights and balancer state that EpochMetrics is gaining

    @attrs.define
    class Epoch(EpochMetrics):
        components: dict = attrs.Factory(dict)
        weights: dict = attrs.Factory(dict)
        balancer: dict = attrs.Factory(dict)


def epoch(i, total=4, **fields):
    base = dict(
        epoch=i,
        total_epochs=total,
        train_loss=2.0 / (i + 1),
        val_loss=2.5 / (i + 1),
        val_recon_loss=1.0,
        val_kl_loss=0.0,
        kl_divergence=3.0,
        overfitting_gap=0.5,
        learning_rate=1e-3,
        eta_seconds=1.0,
        elapsed_seconds=1.0,
    )
    return Epoch(**{**base, **fields})


def rich_history():
    """What a run with per-term train values, weights and a balancer logs (kl spans four decades)."""
    epochs = []
    for i in range(4):
        kl = 10.0 ** (2 - i)
        epochs.append(
            epoch(
                i,
                components={"stft_loss": 1.0 / (i + 1), "kl_loss": kl},
                val_components={"stft_loss": 1.2 / (i + 1), "kl_loss": 1.1 * kl},
                weights={"stft": 1.0, "kl": 0.01 * i / 3},
                balancer={"ratio_stft": 0.4 + 0.1 * i, "ema_norm_stft": 3.0},
            )
        )
    return MetricsHistory(epochs=epochs)


def panel(fig, title):
    return next(ax for ax in fig.axes if ax.get_title() == title)


def test_each_term_has_train_and_val_on_one_axis_and_kl_gets_a_log_axis():
    history = rich_history()
    curves = term_curves(history)
    assert list(curves) == ["stft_loss", "kl_loss"]
    assert curves["kl_loss"][0] == [100.0, 10.0, 1.0, 0.1]
    fig = draw({"run": history})
    assert [ax.get_title() for ax in fig.axes] == ["total", "stft_loss", "kl_loss", "weights and schedules"]
    kl = panel(fig, "kl_loss")
    assert [line.get_label() for line in kl.get_lines()] == ["train", "val"]
    assert list(kl.get_lines()[1].get_ydata()) == pytest.approx([110.0, 11.0, 1.1, 0.11])
    assert kl.get_yscale() == "log" and panel(fig, "stft_loss").get_yscale() == "linear"


def test_weights_and_balancer_ratios_share_their_own_panel():
    history = rich_history()
    schedules = schedule_curves(history)
    assert list(schedules) == ["weight stft", "weight kl", "balancer ratio_stft"]  # ema norms are not ratios
    assert schedules["weight kl"] == pytest.approx([0.0, 0.01 / 3, 0.02 / 3, 0.01])
    lines = panel(draw({"run": history}), "weights and schedules").get_lines()
    assert [line.get_label() for line in lines] == ["weight stft", "weight kl", "balancer ratio_stft"]


def test_an_old_history_plots_its_named_terms_and_the_logged_kl_weight():
    epochs = [epoch(i, val_stft_loss=1.0 / (i + 1), val_kl_loss=0.5) for i in range(3)]
    steps = [StepMetrics(i, 2, 2, 1.0, 1.0, 0.5, 0.01 * i, 1e-3, 0.1) for i in range(3)]
    history = MetricsHistory(steps=steps, epochs=epochs)
    assert list(term_curves(history)) == ["stft_loss", "kl_loss"]  # mag/if never logged: not configured
    assert schedule_curves(history) == {"weight kl": [0.0, 0.01, 0.02]}
    fig = draw({"old": history})
    assert [line.get_label() for line in panel(fig, "stft_loss").get_lines()] == ["val"]


def test_several_runs_overlay_one_colour_each():
    a, b = rich_history(), rich_history()
    for e in b.epochs:
        e.val_loss *= 2
    fig = draw({"a": a, "b": b})
    lines = panel(fig, "total").get_lines()
    assert [line.get_label() for line in lines] == ["a train", "a val", "b train", "b val"]
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    assert lines[1].get_linestyle() == "--" and lines[0].get_linestyle() == "-"


def cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.slow
@pytest.mark.e2e
def test_plot_command_redraws_and_overlays_from_history_json(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        rich_history().save(tmp_path / name / "history.json")
    r = cli("plot", "a", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a" / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli("plot", "a", "b", cwd=tmp_path)
    assert r.returncode == 2 and "several runs need --out" in r.stderr
    r = cli("plot", "a", "b", "--out", "both.png", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "both.png").stat().st_size > 10_000
    r = cli("plot", "a", "b", "--out", "both.png", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: both.png already exists; choose another --out or pass --force to replace it"
    )
    r = cli("plot", "missing", cwd=tmp_path)
    assert r.returncode == 2 and "missing/history.json: no such history file" in r.stderr
