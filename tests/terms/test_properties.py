"""Property tests: configs round-trip through every format; terms are finite, non-negative, zero at identity."""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distill_core
from distill_core import Constant, Cosine, Cyclical, LinearWarmup, LossConfig, dump_config, load_config

finite = st.floats(min_value=0.0, max_value=1e3, allow_nan=False, allow_infinity=False)
fraction = st.floats(min_value=0.0, max_value=1.0)
weights = st.one_of(
    finite,
    st.builds(Constant, finite),
    st.builds(LinearWarmup, finite, fraction),
    st.builds(Cosine, finite, finite),
    st.builds(Cyclical, finite, st.integers(1, 8), fraction),
)


@st.composite
def resolutions(draw):
    count = draw(st.integers(1, 4))
    ffts, hops, wins = [], [], []
    for _ in range(count):
        fft = draw(st.sampled_from([64, 128, 256, 512, 1024, 2048, 4096]))
        win = draw(st.integers(1, fft))
        hop = draw(st.integers(1, win))
        ffts.append(fft), wins.append(win), hops.append(hop)
    return {"fft_sizes": ffts, "hop_sizes": hops, "win_lengths": wins}


@st.composite
def configs(draw):
    stft = {
        **draw(resolutions()),
        "weight": draw(weights),
        "w_sc": draw(finite),
        "w_log_mag": draw(finite),
        "w_lin_mag": draw(finite),
        "mag_distance": draw(st.sampled_from(["L1", "L2"])),
        "window": draw(st.sampled_from(["hann_window", "hamming_window", "kaiser_window"])),
        "input": draw(st.sampled_from(["magnitude", "waveform"])),
        "eps": draw(st.floats(1e-12, 1e-3)),
    }
    config = LossConfig()
    stft_cfg = distill_core.converter.structure(
        {k: v for k, v in stft.items() if not isinstance(v, (Constant, LinearWarmup, Cosine, Cyclical))},
        type(config.terms["stft"]),
    )
    stft_cfg.weight = stft["weight"]
    config.terms["stft"] = stft_cfg
    if stft["input"] == "waveform":  # the recipe's batch holds spectrograms: read its waveform views
        from distill_core.loss.config import TermBinding

        config.bindings["stft"] = TermBinding(inputs={"recon": "recon_wave", "target": "target_wave"})
    config.terms["kl"].free_bits = draw(finite)
    config.terms["kl"].weight = draw(weights)
    config.terms["if_recon"].weight = draw(weights)
    config.groups["reconstruction"].weight = draw(weights)
    config.groups["reconstruction"].members["if_recon"] = draw(finite)
    if draw(st.booleans()):
        config.required_plugins = ("distill-stft>=0.1",)
    return config


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs(), suffix=st.sampled_from([".toml", ".json", ".yaml"]))
def test_any_valid_config_round_trips(tmp_path, config, suffix):
    path = dump_config(config, tmp_path / f"loss{suffix}")
    assert load_config(path) == config


spectrograms = st.tuples(st.integers(1, 3), st.sampled_from([(16, 8), (32, 64)])).flatmap(
    lambda shape: st.tuples(st.just(shape), st.integers(0, 2**31 - 1), st.floats(0.0, 50.0))
)

TERMS = ["stft", "mag_recon", "if_recon", "kl"]


def make_batch(shape, seed, scale):
    (b, (f, t)) = shape
    g = torch.Generator().manual_seed(seed)
    return {
        "recon": torch.rand(b, 2, f, t, generator=g) * scale,
        "target": torch.rand(b, 2, f, t, generator=g) * scale,
        "mu": torch.randn(b, 5, generator=g) * scale,
        "logvar": torch.randn(b, 5, generator=g),
    }


def term(name):
    info = distill_core.get_registry().get(name)
    cfg = info.config_class()
    if name == "stft":
        cfg = info.config_class(fft_sizes=(64, 128), hop_sizes=(16, 32), win_lengths=(64, 128))
    return info.cls(cfg)


BUILT = {name: term(name) for name in TERMS}


@settings(max_examples=40, deadline=None)
@given(case=spectrograms)
def test_terms_are_finite_and_non_negative(case):
    shape, seed, scale = case
    batch = make_batch(shape, seed, scale)
    for name, t in BUILT.items():
        value = float(t(batch))
        assert math.isfinite(value) and value >= 0, (name, value)


@settings(max_examples=40, deadline=None)
@given(case=spectrograms)
def test_zero_at_identity_where_declared(case):
    shape, seed, scale = case
    batch = make_batch(shape, seed, scale)
    batch["recon"] = batch["target"].clone()
    declared = [name for name, t in BUILT.items() if type(t).zero_at_identity]
    assert declared == ["stft", "mag_recon", "if_recon"]
    for name in declared:
        assert float(BUILT[name](batch)) == 0.0, name
