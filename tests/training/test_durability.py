"""Interrupting training with a real signal loses nothing, and resuming gives the uninterrupted result."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill_core import CombinedLoss, load_config
from distill_core.loss.combined import TermBuildError
from distill_core.registry.discovery import Registry
from distill_core.testing import write_distribution
from distill_core.training.checkpoint import load_checkpoint
from distill_core.training.metrics import MetricsHistory

WORKER = Path(__file__).with_name("train_worker.py")


def run_worker(*args, **kw):
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    proc = run_worker("--out", out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return MetricsHistory.load(out / "history.json")


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "KeyboardInterrupt"])
def test_signal_mid_epoch_then_resume(tmp_path, uninterrupted, sig):
    out, markers = tmp_path / "run", tmp_path / "markers"
    markers.mkdir()
    proc = run_worker("--out", out, "--markers", markers)
    deadline = time.time() + 120
    while not (markers / "epoch1_step2").exists():  # the middle of the second epoch
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    history = MetricsHistory.load(out / "history.json")
    assert [e.epoch for e in history.epochs] == [0]
    assert load_checkpoint(out / "last.pt")["epoch"] == 0
    assert not (markers / "epoch2_step1").exists()

    resumed = run_worker("--out", out, "--resume", out / "last.pt")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    final = MetricsHistory.load(out / "history.json")
    assert len(final.epochs) == 3
    for got, want in zip(final.epochs, uninterrupted.epochs):
        assert got.train_loss == pytest.approx(want.train_loss, rel=1e-6)
        assert got.val_loss == pytest.approx(want.val_loss, rel=1e-6)


@pytest.mark.slow
@pytest.mark.e2e
def test_cli_sigterm_exits_cleanly_with_a_resume_hint(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distill_core.cli.main",
            "train",
            "--epochs",
            "50",
            "--clips",
            "16",
            "--batch-size",
            "4",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (tmp_path / "demo" / "last.pt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"interrupted; resume with: distill-loss train --resume {tmp_path / 'demo' / 'last.pt'} --no-progress" in err
    assert "Traceback" not in err
    assert MetricsHistory.load(tmp_path / "demo" / "history.json").epochs
    assert load_checkpoint(tmp_path / "demo" / "last.pt")["epoch"] >= 0


INIT_FAILS = """
import attrs
from distill_core import LossTerm, hookimpl

@attrs.define
class Cfg:
    weight: float = 1.0

class Fragile(LossTerm):
    name = "fragile"
    config_class = Cfg
    requires = ("recon",)
    def __init__(self, config):
        raise RuntimeError("needs a GPU filterbank")

@hookimpl
def distill_loss_terms(register):
    register(Fragile)
"""


def test_term_init_failure_fails_only_configs_that_use_it(tmp_path, monkeypatch):
    write_distribution(
        tmp_path, "distill-fragile", "0.3", {"fragile_plugin": INIT_FAILS}, {"fragile": "fragile_plugin"}
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    registry.load_entrypoints()
    assert registry.broken == [] and "fragile" in registry.terms  # discovery carries on
    with pytest.raises(
        TermBuildError,
        match=r"term 'fragile' from distill-fragile==0.3 failed to build: "
        r"RuntimeError: needs a GPU filterbank",
    ):
        CombinedLoss(load_config({"recipe": "none", "terms": {"fragile": {}}}, registry), registry)
    ok = CombinedLoss(load_config({"recipe": "none", "terms": {"mag_recon": {}}}, registry), registry)
    assert "mag_recon" in ok.terms
