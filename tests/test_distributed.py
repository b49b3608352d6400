"""DDP with two gloo processes on CPU against one process with the full batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_ddp_matches_single_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(WORKER), "--out", str(tmp_path / "single.pt")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    store = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, str(WORKER), "--rank", str(r), "--world", "2", "--store", str(store),
                               "--out", str(tmp_path / f"rank{r}.pt")], env=env, stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    ref = torch.load(tmp_path / "single.pt", weights_only=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for result in ranks:
        assert result["grads"].keys() == ref["grads"].keys()
        for name, grad in ref["grads"].items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-5, atol=1e-7)
    # Epoch metrics: all-reduced once per epoch, identical on both ranks and equal to one process's.
    assert ranks[0]["train"] == ranks[1]["train"] and ranks[0]["val"] == ranks[1]["val"]
    for key in ("total_loss", "mag_recon_loss", "kl_loss"):
        assert ranks[0]["train"][key] == pytest.approx(ref["train"][key], rel=1e-5)
        assert ranks[0]["val"][key] == pytest.approx(ref["val"][key], rel=1e-5)
    assert ranks[0]["val"]["kl_divergence"] == pytest.approx(ref["val"]["kl_divergence"], rel=1e-5)
