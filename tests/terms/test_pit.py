"""Permutation-invariant training (pit = {axis, method}): against a plain brute force, asteroid's PITLossWrapper,
across methods, without host syncs, and its config errors."""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from pathlib import Path

import auraloss
import pytest
import torch

from distill_core import CombinedLoss
from distill_core.config.converter import ConfigError
from distill_core.loss.config import dumps_config, load_config
from distill_core.terms.base import BatchError
from distill_core.terms.pit import MAX_BRUTE_SOURCES, PITConfig, permuted, refusal
from distill_core.testing import SYNC_METHODS

ROOT = Path(__file__).resolve().parents[2]
ANCHORS = Path(os.environ.get("DISTILL_ANCHORS", ROOT / ".venv" / "anchors"))


def pit_loss(term: str = "auraloss_sisdr", method: str = "brute", **section) -> CombinedLoss:
    return CombinedLoss(
        load_config({"recipe": "none", "terms": {term: {"pit": {"axis": 1, "method": method}, **section}}})
    )


def shuffled_mixture(batch: int = 4, sources: int = 3, n: int = 400, seed: int = 0):
    """Targets and estimates that are noisy targets, each example's sources in a known random order."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(batch, sources, n, generator=g)
    order = torch.stack([torch.randperm(sources, generator=g) for _ in range(batch)])
    est = torch.stack([target[b, order[b]] for b in range(batch)]) + 0.3 * torch.randn(batch, sources, n, generator=g)
    return est, target, order


def reference_pit(est: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """Plain brute force, one example and one permutation at a time, auraloss's SI-SDR as the loss."""
    sisdr = auraloss.time.SISDRLoss()
    best, chosen = [], []
    for b in range(est.shape[0]):
        perms = itertools.permutations(range(est.shape[1]))
        values = {p: sisdr(est[b : b + 1, list(p)], target[b : b + 1]) for p in perms}
        p = min(values, key=lambda k: float(values[k]))
        best.append(values[p])
        chosen.append(p)
    return torch.stack(best).mean(), chosen


@pytest.mark.parametrize("method", ["brute", "hungarian"])
def test_pit_equals_a_plain_brute_force(method):
    est, target, order = shuffled_mixture()
    loss = pit_loss(method=method)
    out = loss({"recon": est, "target": target})
    expected, chosen = reference_pit(est, target)
    assert float(out["auraloss_sisdr_loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert [tuple(p) for p in loss.permutations["auraloss_sisdr"].tolist()] == chosen
    # the estimates were the targets in ``order``: estimate order[b, j] holds reference j's inverse ...
    assert torch.equal(
        permuted(est, loss.permutations["auraloss_sisdr"], 1).sub(target).abs().lt(1.5).all(), torch.tensor(True)
    )
    # ... and the loss under PIT is far below the loss of the order given
    plain = CombinedLoss(load_config({"recipe": "none", "terms": {"auraloss_sisdr": {}}}))
    assert float(out["auraloss_sisdr_loss"]) < float(plain({"recon": est, "target": target})["total_loss"]) - 10


def test_identity_share_is_logged_as_a_zero_dim_tensor():
    est, target, _ = shuffled_mixture(batch=6, sources=2)
    est[:3] = target[:3] + 0.1 * est[:3]  # the first three in order, the rest swapped (2 sources)
    est[3:] = target[3:].flip(1) + 0.1 * est[3:]
    out = pit_loss()({"recon": est, "target": target})
    assert out["auraloss_sisdr_pit_identity"].dim() == 0
    assert float(out["auraloss_sisdr_pit_identity"]) == pytest.approx(0.5)


def test_brute_force_and_hungarian_agree_with_gradients():
    est, target, _ = shuffled_mixture(batch=3, sources=4, seed=1)
    results = []
    for method in ("brute", "hungarian"):
        x = est.clone().requires_grad_(True)
        loss = pit_loss(method=method)
        value = loss({"recon": x, "target": target})["total_loss"]
        value.backward()
        results.append((value.detach(), x.grad, loss.permutations["auraloss_sisdr"]))
    (v1, g1, p1), (v2, g2, p2) = results
    assert torch.allclose(v1, v2, rtol=1e-5)
    assert torch.allclose(g1, g2, rtol=1e-4, atol=1e-7)
    assert torch.equal(p1, p2)


def test_stoi_under_pit_brute_and_hungarian_agree():
    pytest.importorskip("distill_stoi")
    g = torch.Generator().manual_seed(2)
    target = torch.randn(2, 2, 6000, generator=g)
    est = target.flip(1) + 0.5 * torch.randn(2, 2, 6000, generator=g)
    outs = [
        pit_loss("stoi", method, sample_rate=10000)({"recon": est, "target": target})["stoi_loss"]
        for method in ("brute", "hungarian")
    ]
    assert torch.allclose(outs[0], outs[1], rtol=1e-5)
    plain = CombinedLoss(load_config({"recipe": "none", "terms": {"stoi": {"sample_rate": 10000}}}))
    assert float(outs[0]) < float(plain({"recon": est, "target": target})["stoi_loss"])


def test_brute_force_never_syncs(sync_counter):
    est, target, _ = shuffled_mixture(sources=3)
    loss = pit_loss()
    x = est.clone().requires_grad_(True)
    out = loss({"recon": x, "target": target})
    out["total_loss"].backward()
    assert sync_counter == {m: 0 for m in SYNC_METHODS}


def test_hungarian_syncs_once_per_step(sync_counter):
    est, target, _ = shuffled_mixture(sources=3)
    pit_loss(method="hungarian")({"recon": est, "target": target})
    assert sync_counter["cpu"] == 1
    assert sum(v for k, v in sync_counter.items() if k not in ("cpu", "numpy")) == 0


def test_too_many_sources_for_brute_force_names_the_term_and_the_way_out():
    s = MAX_BRUTE_SOURCES + 1
    with pytest.raises(BatchError, match=r"auraloss_sisdr.*6 sources.*pit.method = \"hungarian\""):
        pit_loss()({"recon": torch.randn(1, s, 64), "target": torch.randn(1, s, 64)})
    out = pit_loss(method="hungarian")({"recon": torch.randn(1, s, 64), "target": torch.randn(1, s, 64)})
    assert torch.isfinite(out["total_loss"])


@pytest.mark.parametrize(
    "pit, where, message",
    [
        ({"axis": 0}, "terms.auraloss_sisdr.pit.axis", "expected an axis in 1..2"),
        ({"axis": 3}, "terms.auraloss_sisdr.pit.axis", "got 3"),
        ({"axis": "1"}, "terms.auraloss_sisdr.pit.axis", "expected int"),
        ({"method": "greedy"}, "terms.auraloss_sisdr.pit.method", "'brute', 'hungarian'"),
        ({"axes": 1}, "terms.auraloss_sisdr.pit.axes", "did you mean 'axis'"),
        (1, "terms.auraloss_sisdr.pit", "expected"),
    ],
)
def test_config_errors_name_the_path(pit, where, message):
    with pytest.raises(ConfigError) as info:
        load_config({"recipe": "none", "terms": {"auraloss_sisdr": {"pit": pit}}})
    assert any(path == where and message in reason for path, reason in info.value.problems), info.value.problems


def test_a_term_without_per_example_or_pairwise_is_refused_in_one_line():
    with pytest.raises(ConfigError) as info:
        load_config({"recipe": "none", "terms": {"auraloss_esr": {"pit": {"axis": 1}}}})
    assert info.value.problems == [
        (
            "terms.auraloss_esr.pit",
            "term 'auraloss_esr' cannot run under pit: it defines "
            "no per_example(batch) returning its loss per example [B]",
        )
    ]
    from distill_auraloss.time_terms import SISDRLossTerm

    class WholeSISDR(SISDRLossTerm):  # per example, but not declared a mean of per-source losses
        pairwise = False

    assert refusal(WholeSISDR, PITConfig(method="brute")) is None
    assert "is not declared pairwise" in refusal(WholeSISDR, PITConfig(method="hungarian"))


def test_pit_survives_a_dump_and_load():
    config = load_config(
        {"recipe": "none", "terms": {"sep": {"term": "auraloss_sisdr", "pit": {"axis": 1, "method": "hungarian"}}}}
    )
    again = load_config(__import__("tomllib").loads(dumps_config(config)))
    assert again.pit_of("sep") == config.pit_of("sep")
    assert again.pit_of("sep").method == "hungarian"


# --- asteroid's PITLossWrapper, read by file from `make anchors`' folder (its package __init__ imports every
# model and their dependencies; pit_wrapper.py and sdr.py import torch and scipy alone) -------------------------


def _asteroid_module(name: str):
    path = ANCHORS / "asteroid" / "losses" / f"{name}.py"
    if not path.exists():
        pytest.skip(f"asteroid is not in {ANCHORS} (make anchors installs it)")
    spec = importlib.util.spec_from_file_location(f"_asteroid_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", ["brute", "hungarian"])
@pytest.mark.parametrize("sources", [2, 3])
def test_equals_asteroid_pit_loss_wrapper(method, sources):
    wrapper = _asteroid_module("pit_wrapper").PITLossWrapper(
        _asteroid_module("sdr").pairwise_neg_sisdr, pit_from="pw_mtx"
    )
    est, target, _ = shuffled_mixture(batch=5, sources=sources, n=300, seed=sources)
    expected, reordered = wrapper(est, target, return_est=True)
    loss = pit_loss(method=method)
    out = loss({"recon": est, "target": target})
    assert float(out["auraloss_sisdr_loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert torch.equal(permuted(est, loss.permutations["auraloss_sisdr"], 1), reordered)


def test_the_config_schema_describes_pit():
    jsonschema = pytest.importorskip("jsonschema")
    from distill_core.loss.schema import config_schema

    schema = config_schema()
    good = {"recipe": "none", "terms": {"auraloss_sisdr": {"pit": {"axis": 1, "method": "hungarian"}}}}
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"terms": {"auraloss_sisdr": {"pit": {"method": "greedy"}}}}, schema)


@pytest.mark.e2e
def test_cli_check_prints_the_pit_error_in_one_line_and_exits_2(tmp_path):
    import subprocess

    path = tmp_path / "sep.toml"
    path.write_text('recipe = "none"\n[terms.auraloss_sisdr]\npit = { axis = 1, method = "greedy" }\n')
    done = subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", "check", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: invalid loss config in {path}: terms.auraloss_sisdr.pit."
        "method: expected one of 'brute', 'hungarian', got 'greedy'"
    ]


ALSA = Path("/usr/share/sounds/alsa")


@pytest.mark.parametrize("method", ["brute", "hungarian"])
def test_equals_asteroid_on_real_speech(method):
    """Three alsa-utils voice recordings as the sources, each example's estimates shuffled and noisy."""
    voices = [ALSA / f"{n}.wav" for n in ("Front_Left", "Front_Right", "Rear_Center")]
    if not all(v.is_file() for v in voices):
        pytest.skip(f"the alsa-utils voice recordings are not in {ALSA} (apt-get install alsa-utils)")
    from distill_core.training.audio import read_wav

    speech = torch.stack([torch.from_numpy(read_wav(v)[0][20_000:26_000]) for v in voices])  # 3 voices, 6000 samples
    g = torch.Generator().manual_seed(7)
    target = torch.stack([speech.roll(b, dims=0) for b in range(2)])  # two examples, sources in other orders
    order = torch.stack([torch.randperm(3, generator=g) for _ in range(2)])
    assert any(not torch.equal(o, torch.arange(3)) for o in order)  # PIT has an order to find
    est = torch.stack([target[b, order[b]] for b in range(2)]) + 0.05 * torch.randn(target.shape, generator=g)
    wrapper = _asteroid_module("pit_wrapper").PITLossWrapper(
        _asteroid_module("sdr").pairwise_neg_sisdr, pit_from="pw_mtx"
    )
    expected, reordered = wrapper(est, target, return_est=True)
    loss = pit_loss(method=method)
    out = loss({"recon": est, "target": target})
    assert float(out["auraloss_sisdr_loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert torch.equal(permuted(est, loss.permutations["auraloss_sisdr"], 1), reordered)
    assert float(out["auraloss_sisdr_loss"]) == pytest.approx(float(reference_pit(est, target)[0]), rel=1e-5)
