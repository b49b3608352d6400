"""A stateful term under DDP: two gloo ranks with half the batch each equal one process on the whole batch, in D's
weights and the generator's, after three steps (each rank built its own D: rank 0's reaches the other); with D's
gradients left per rank, the ranks' discriminators drift apart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("stateful_ddp_worker.py")


def two_ranks(tmp_path: Path, *extra: str) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), "--rank", str(r), "--world", "2", "--store",
                               str(tmp_path / "store"), "--out", str(tmp_path / f"rank{r}.pt"), *extra], env=env,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_two_ranks_with_half_the_batch_equal_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(WORKER), "--out", str(tmp_path / "single.pt")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ref = torch.load(tmp_path / "single.pt", weights_only=True)
    assert int(ref["d"]["terms.adversarial.adversarial.updates"]) == 3
    for rank in two_ranks(tmp_path):
        for part in ("d", "g"):
            assert rank[part].keys() == ref[part].keys()
            for name, value in ref[part].items():
                torch.testing.assert_close(rank[part][name], value, rtol=1e-5, atol=1e-5, msg=f"{part} {name}")
        for key, value in ref["means"].items():  # the epoch's figures, all-reduced: the global batch's
            assert rank["means"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_with_d_gradients_left_per_rank_the_discriminators_drift_apart(tmp_path):
    ranks = two_ranks(tmp_path, "--broadcast-only")
    names = [k for k in ranks[0]["d"] if k.endswith("weight.original1")]
    drift = max(float((ranks[0]["d"][k] - ranks[1]["d"][k]).abs().max()) for k in names)
    assert names and drift > 1e-4, drift
