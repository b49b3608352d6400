"""The auraloss terms against auraloss itself (the oracle), plus their configs, refusals and discovery."""

from __future__ import annotations

import inspect
import sys
from importlib import metadata

import attrs
import auraloss
import distill_auraloss as da
import numpy as np
import pytest
import torch

import distill_core
from distill_core import BatchError, CombinedLoss, ConfigError, InvalidConfig, TermBuildError, load_config
from distill_core.testing import check_discovery, check_term

SMALL = dict(fft_sizes=(64, 128, 256), hop_sizes=(16, 32, 64), win_lengths=(48, 128, 200))
SMALL_LISTS = {k: list(v) for k, v in SMALL.items()}
MEL = dict(fft_size=512, hop_size=128, win_length=400)
SHAPES = [(2, 1, 4096), (3, 2, 2049), (1, 2, 1023)]  # odd lengths included; C = 2 serves sum/difference


def waves(shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=dtype)
    return x, 0.6 * x + 0.4 * torch.randn(*shape, generator=g, dtype=dtype)  # correlated, like a reconstruction


def value_and_grad(fn, x, y):
    x = x.clone().requires_grad_(True)
    value = fn(x, y)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def assert_parity(term, oracle, shape, seed=0):
    """Value and gradient of the term equal auraloss's, to 1e-5 relative."""
    x, y = waves(shape, seed)
    v1, g1 = value_and_grad(lambda a, b: term({"recon": a, "target": b}), x, y)
    v2, g2 = value_and_grad(oracle, x, y)
    assert v1.dim() == 0 and torch.isfinite(v1)
    torch.testing.assert_close(v1, v2, rtol=1e-5, atol=0)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-5 * float(g2.abs().max()))
    assert float(g1.abs().max()) > 0


def chroma_oracle(sample_rate, fft_size, hop_size, win_length, n_chroma=12, **stft_options):
    """auraloss's STFTLoss forward with librosa's chroma filterbank: what auraloss 0.4's ChromaSTFTLoss
    means to compute, had its constructor not failed (it registers a numpy array as a buffer)."""
    import librosa

    loss = auraloss.freq.STFTLoss(fft_size, hop_size, win_length, **stft_options)
    loss.scale = "chroma"
    loss.fb = torch.tensor(librosa.filters.chroma(sr=sample_rate, n_fft=fft_size, n_chroma=n_chroma))
    return loss


# (term, config options, the auraloss module the test builds itself with the same arguments)
PARITY = [
    (da.ESRLossTerm, {}, lambda: auraloss.time.ESRLoss()),
    (da.ESRLossTerm, {"eps": 1e-3, "reduction": "sum"}, lambda: auraloss.time.ESRLoss(eps=1e-3, reduction="sum")),
    (da.DCLossTerm, {}, lambda: auraloss.time.DCLoss()),
    (da.DCLossTerm, {"reduction": "sum"}, lambda: auraloss.time.DCLoss(reduction="sum")),
    (da.LogCoshLossTerm, {}, lambda: auraloss.time.LogCoshLoss()),
    (da.LogCoshLossTerm, {"a": 2.5, "eps": 1e-4}, lambda: auraloss.time.LogCoshLoss(a=2.5, eps=1e-4)),
    (da.SNRLossTerm, {}, lambda: auraloss.time.SNRLoss()),
    (
        da.SNRLossTerm,
        {"zero_mean": False, "reduction": "sum"},
        lambda: auraloss.time.SNRLoss(zero_mean=False, reduction="sum"),
    ),
    (da.SISDRLossTerm, {}, lambda: auraloss.time.SISDRLoss()),
    (da.SISDRLossTerm, {"zero_mean": False, "eps": 1e-6}, lambda: auraloss.time.SISDRLoss(zero_mean=False, eps=1e-6)),
    (da.SDSDRLossTerm, {}, lambda: auraloss.time.SDSDRLoss()),
    (da.SDSDRLossTerm, {"zero_mean": False}, lambda: auraloss.time.SDSDRLoss(zero_mean=False)),
    (
        da.STFTLossTerm,
        {"fft_size": 256, "hop_size": 64, "win_length": 200},
        lambda: auraloss.freq.STFTLoss(256, 64, 200),
    ),
    (
        da.STFTLossTerm,
        {
            "fft_size": 128,
            "hop_size": 32,
            "win_length": 96,
            "window": "hamming_window",
            "w_sc": 0.5,
            "w_log_mag": 2.0,
            "w_lin_mag": 0.3,
            "w_phs": 0.1,
            "mag_distance": "L2",
            "reduction": "sum",
            "eps": 1e-6,
        },
        lambda: auraloss.freq.STFTLoss(
            128,
            32,
            96,
            "hamming_window",
            w_sc=0.5,
            w_log_mag=2.0,
            w_lin_mag=0.3,
            w_phs=0.1,
            mag_distance="L2",
            reduction="sum",
            eps=1e-6,
        ),
    ),
    (
        da.STFTLossTerm,
        {**MEL, "scale": "mel", "sample_rate": 16000, "n_bins": 40, "window": "blackman_window"},
        lambda: auraloss.freq.STFTLoss(512, 128, 400, "blackman_window", sample_rate=16000, scale="mel", n_bins=40),
    ),
    (
        da.STFTLossTerm,
        {
            "fft_size": 256,
            "hop_size": 64,
            "win_length": 256,
            "perceptual_weighting": True,
            "sample_rate": 44100,
            "window": "kaiser_window",
        },
        lambda: auraloss.freq.STFTLoss(256, 64, 256, "kaiser_window", sample_rate=44100, perceptual_weighting=True),
    ),
    (
        da.STFTLossTerm,
        {**MEL, "scale": "chroma", "sample_rate": 22050, "n_bins": 12},
        lambda: chroma_oracle(22050, 512, 128, 400, 12),
    ),
    (
        da.MelSTFTLossTerm,
        {**MEL, "sample_rate": 16000, "n_mels": 32},
        lambda: auraloss.freq.MelSTFTLoss(16000, 512, 128, 400, n_mels=32),
    ),
    (
        da.MelSTFTLossTerm,
        {
            **MEL,
            "sample_rate": 22050,
            "n_mels": 24,
            "w_lin_mag": 1.0,
            "w_sc": 0.0,
            "mag_distance": "L2",
            "window": "bartlett_window",
        },
        lambda: auraloss.freq.MelSTFTLoss(
            22050, 512, 128, 400, "bartlett_window", w_sc=0.0, w_lin_mag=1.0, n_mels=24, mag_distance="L2"
        ),
    ),
    (da.ChromaSTFTLossTerm, {**MEL, "sample_rate": 16000}, lambda: chroma_oracle(16000, 512, 128, 400)),
    (
        da.ChromaSTFTLossTerm,
        {**MEL, "sample_rate": 16000, "n_chroma": 24, "w_lin_mag": 0.5},
        lambda: chroma_oracle(16000, 512, 128, 400, 24, w_lin_mag=0.5),
    ),
    (da.MultiResolutionSTFTLossTerm, SMALL, lambda: auraloss.freq.MultiResolutionSTFTLoss(**SMALL_LISTS)),
    (
        da.MultiResolutionSTFTLossTerm,
        {
            **SMALL,
            "w_lin_mag": 1.0,
            "w_phs": 0.2,
            "perceptual_weighting": True,
            "sample_rate": 16000,
            "reduction": "sum",
        },
        lambda: auraloss.freq.MultiResolutionSTFTLoss(
            **SMALL_LISTS, w_lin_mag=1.0, w_phs=0.2, sample_rate=16000, perceptual_weighting=True, reduction="sum"
        ),
    ),
    (
        da.MultiResolutionSTFTLossTerm,
        {
            "fft_sizes": (256, 512),
            "hop_sizes": (64, 128),
            "win_lengths": (256, 512),
            "scale": "mel",
            "sample_rate": 16000,
            "n_bins": 20,
        },
        lambda: auraloss.freq.MultiResolutionSTFTLoss(
            [256, 512], [64, 128], [256, 512], sample_rate=16000, scale="mel", n_bins=20
        ),
    ),
    (da.SumAndDifferenceSTFTLossTerm, SMALL, lambda: auraloss.freq.SumAndDifferenceSTFTLoss(**SMALL_LISTS)),
    (
        da.SumAndDifferenceSTFTLossTerm,
        {**SMALL, "w_sum": 0.3, "w_diff": 2.0, "w_lin_mag": 0.5, "window": "blackman_window"},
        lambda: auraloss.freq.SumAndDifferenceSTFTLoss(
            **SMALL_LISTS, window="blackman_window", w_sum=0.3, w_diff=2.0, w_lin_mag=0.5
        ),
    ),
]


def case_id(case):
    term, options, _ = case
    return term.name + ("(" + ",".join(f"{k}={v}" for k, v in options.items()) + ")" if options else "")


def with_shapes(cases):
    """Each case on one of SHAPES in turn (every shape meets every kind of term), stereo for sum/difference."""
    out = []
    for i, (term, options, oracle) in enumerate(cases):
        b, c, n = SHAPES[i % len(SHAPES)]
        shape = (b, 2, n) if term is da.SumAndDifferenceSTFTLossTerm else (b, c, n)
        out.append(pytest.param(term, options, oracle, shape, id=f"{case_id((term, options, oracle))}-{b}x{c}x{n}"))
    return out


@pytest.mark.parametrize("term_class,options,oracle,shape", with_shapes(PARITY))
def test_value_and_gradient_equal_auraloss(term_class, options, oracle, shape):
    assert_parity(term_class(term_class.config_class(**options)), oracle(), shape)


def test_every_auraloss_loss_has_a_term_named_by_the_rule():
    wrapped = {t.wraps for t in da.TERMS}
    time_losses = {c for n, c in vars(auraloss.time).items() if n.endswith("Loss") and isinstance(c, type)}
    freq_losses = {
        auraloss.freq.STFTLoss,
        auraloss.freq.MelSTFTLoss,
        auraloss.freq.ChromaSTFTLoss,
        auraloss.freq.MultiResolutionSTFTLoss,
        auraloss.freq.RandomResolutionSTFTLoss,
        auraloss.freq.SumAndDifferenceSTFTLoss,
    }
    assert wrapped == time_losses | freq_losses and len(da.TERMS) == 12
    short = {"MultiResolution": "mr", "RandomResolution": "rr", "SumAndDifference": "sd"}
    for term in da.TERMS:
        stem = term.wraps.__name__.removesuffix("Loss")
        for long, abbrev in short.items():
            stem = stem.replace(long, abbrev)
        assert term.name == "auraloss_" + stem.lower()
        assert term.requires == ("recon", "target")
        channels = "2" if term is da.SumAndDifferenceSTFTLossTerm else "C"
        assert term.layouts == {"recon": f"B, {channels}, N", "target": f"B, {channels}, N"}


# Arguments a config leaves out (with the reason) or whose default auraloss does not give.
NOT_MIRRORED = {"device"}  # a term follows .to(device)
NO_AURALOSS_DEFAULT = {
    (da.MelSTFTLossTerm, "sample_rate"),
    (da.ChromaSTFTLossTerm, "sample_rate"),
    (da.SumAndDifferenceSTFTLossTerm, "fft_sizes"),
    (da.SumAndDifferenceSTFTLossTerm, "hop_sizes"),
    (da.SumAndDifferenceSTFTLossTerm, "win_lengths"),
}


def auraloss_parameters(cls):
    """Every argument the auraloss class takes by name, with its default, following **kwargs to STFTLoss."""
    out = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.kind is p.VAR_KEYWORD:
            continue
        out[name] = p.default
    if cls is auraloss.freq.SumAndDifferenceSTFTLoss:  # **kwargs go to MultiResolutionSTFTLoss
        out = {**auraloss_parameters(auraloss.freq.MultiResolutionSTFTLoss), **out}
    if cls in (
        auraloss.freq.MultiResolutionSTFTLoss,
        auraloss.freq.MelSTFTLoss,
        auraloss.freq.ChromaSTFTLoss,
        auraloss.freq.SumAndDifferenceSTFTLoss,
    ):  # **kwargs go to STFTLoss
        stft = auraloss_parameters(auraloss.freq.STFTLoss)
        taken = {"fft_size", "hop_size", "win_length", "scale", "n_bins", "sample_rate"}
        out = {**{k: v for k, v in stft.items() if k not in taken}, **out}
    return out


@pytest.mark.parametrize("term", da.TERMS, ids=lambda t: t.name)
def test_config_mirrors_the_constructor(term):
    fields = {f.name: f.default for f in attrs.fields(term.config_class)}
    params = auraloss_parameters(term.wraps)
    expected_extra = {"weight"} | ({"seed"} if term is da.RandomResolutionSTFTLossTerm else set())
    assert set(fields) - set(params) == expected_extra
    assert set(params) - set(fields) == NOT_MIRRORED & set(params)
    for name, default in params.items():
        if name in NOT_MIRRORED or (term, name) in NO_AURALOSS_DEFAULT:
            continue
        expected = tuple(default) if isinstance(default, list) else default
        assert fields[name] == expected, f"{term.name}.{name}: {fields[name]!r} vs auraloss {default!r}"
    assert fields["weight"] == 1.0


def test_sum_and_difference_defaults_are_multiresolution_defaults():
    sd, mr = da.SumAndDifferenceSTFTLossConfig(), da.MultiResolutionSTFTLossConfig()
    assert (sd.fft_sizes, sd.hop_sizes, sd.win_lengths) == (mr.fft_sizes, mr.hop_sizes, mr.win_lengths)


# --- RandomResolutionSTFTLoss ------------------------------------------------------------------------------

RR = dict(min_fft_size=32, max_fft_size=512)


def test_random_resolution_without_seed_draws_from_numpy_like_auraloss():
    x, y = waves((2, 1, 1025))
    np.random.seed(7)
    term = da.RandomResolutionSTFTLossTerm(da.RandomResolutionSTFTLossConfig(**RR, resolutions=4))
    ours = value_and_grad(lambda a, b: term({"recon": a, "target": b}), x, y)
    np.random.seed(7)
    ref = auraloss.freq.RandomResolutionSTFTLoss(resolutions=4, **RR)
    theirs = value_and_grad(ref, x, y)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-5, atol=1e-5 * float(theirs[1].abs().max()))
    assert [m.fft_size for m in term.loss.stft_losses] == [m.fft_size for m in ref.stft_losses]


def test_random_resolution_seed_is_a_private_stream():
    x, y = waves((2, 1, 1025))
    config = da.RandomResolutionSTFTLossConfig(**RR, seed=11, scale="mel", sample_rate=16000, n_mels=8)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b = da.RandomResolutionSTFTLossTerm(config), da.RandomResolutionSTFTLossTerm(config)
    values_a = [a({"recon": x, "target": y}) for _ in range(3)]
    np.random.rand(5)  # another numpy user in between changes nothing for a seeded term
    values_b = [b({"recon": x, "target": y}) for _ in range(3)]
    assert torch.equal(torch.stack(values_a), torch.stack(values_b))
    assert len({float(v) for v in values_a}) == 3  # redrawn on every call (randomize_rate = 1)
    np.random.seed(123)
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(11)  # the same draws as auraloss after np.random.seed(seed)
    ref = auraloss.freq.RandomResolutionSTFTLoss(**RR, sample_rate=16000, scale="mel", n_mels=8)
    torch.testing.assert_close(values_a[0], ref(x, y), rtol=1e-5, atol=0)


def test_random_resolution_redraws_every_randomize_rate_calls():
    x, y = waves((1, 1, 1025))
    term = da.RandomResolutionSTFTLossTerm(da.RandomResolutionSTFTLossConfig(**RR, seed=0, randomize_rate=2))
    v = [float(term({"recon": x, "target": y})) for _ in range(4)]
    assert v[0] == v[1] and v[2] == v[3] and v[1] != v[2]


def test_random_resolution_length_check():
    term = da.RandomResolutionSTFTLossTerm(da.RandomResolutionSTFTLossConfig(**RR))
    with pytest.raises(
        BatchError, match="auraloss_rrstft: batch\\['recon'\\] has 512 samples .* more than max_fft_size = 512"
    ):
        term({"recon": torch.randn(1, 1, 512), "target": torch.randn(1, 1, 512)})


# --- the test kit ------------------------------------------------------------------------------------------


def batch_of(shape):
    return lambda dtype, device: dict(zip(("recon", "target"), (t.to(device) for t in waves(shape, dtype=dtype))))


KIT = [
    (da.ESRLossTerm, None),
    (da.DCLossTerm, None),
    (da.LogCoshLossTerm, None),
    (da.SNRLossTerm, None),
    (da.SISDRLossTerm, None),
    (da.SDSDRLossTerm, None),
    (da.STFTLossTerm, {"fft_size": 128, "hop_size": 32, "win_length": 128, "w_lin_mag": 0.5}),
    (da.MelSTFTLossTerm, {"sample_rate": 16000, "fft_size": 256, "hop_size": 64, "win_length": 256, "n_mels": 16}),
    (da.ChromaSTFTLossTerm, {"sample_rate": 16000, "fft_size": 256, "hop_size": 64, "win_length": 256}),
    (da.MultiResolutionSTFTLossTerm, SMALL),
    (da.RandomResolutionSTFTLossTerm, {"min_fft_size": 32, "max_fft_size": 256, "seed": 0, "randomize_rate": 10**6}),
    (da.SumAndDifferenceSTFTLossTerm, SMALL),
]


@pytest.mark.parametrize("term,options", KIT, ids=[t.name for t, _ in KIT])
def test_conformance(term, options):
    shape = (2, 2, 512) if term is da.SumAndDifferenceSTFTLossTerm else (2, 1, 512)
    check_term(term, batch_of(shape), term.config_class(**(options or {})))


@pytest.mark.parametrize("term", da.TERMS, ids=lambda t: t.name)
def test_discovered_with_distribution_and_version(term):
    info = check_discovery(term, "distill-auraloss")
    assert str(info.provenance) == f"distill-auraloss=={metadata.version('distill-auraloss')}"
    assert info.provenance.entry_point == "auraloss = distill_auraloss"


# --- configs -----------------------------------------------------------------------------------------------

ROUND_TRIP = {
    "auraloss_esr": {"eps": 1e-6, "reduction": "sum", "weight": 0.5},
    "auraloss_dc": {"reduction": "sum"},
    "auraloss_logcosh": {"a": 3.0},
    "auraloss_snr": {"zero_mean": False},
    "auraloss_sisdr": {"eps": 1e-7, "weight": {"schedule": "linear_warmup", "max": 0.1, "warmup_fraction": 0.2}},
    "auraloss_sdsdr": {"reduction": "sum"},
    "auraloss_stft": {
        "fft_size": 512,
        "hop_size": 128,
        "win_length": 400,
        "scale": "mel",
        "sample_rate": 16000,
        "n_bins": 40,
        "window": "hamming_window",
        "mag_distance": "L2",
    },
    "auraloss_melstft": {"sample_rate": 22050, "n_mels": 64, "perceptual_weighting": True},
    "auraloss_chromastft": {"sample_rate": 16000, "n_chroma": 24},
    "auraloss_mrstft": {**SMALL_LISTS, "w_phs": 0.1, "reduction": "sum"},
    "auraloss_rrstft": {"resolutions": 2, "windows": ["hann_window", "kaiser_window"], "seed": 3},
    "auraloss_sdstft": {**SMALL_LISTS, "w_sum": 0.5, "w_diff": 2.0},
}


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_config_round_trip_through_a_file(tmp_path, suffix):
    config = load_config({"recipe": "none", "terms": ROUND_TRIP})
    assert set(config.terms) == set(ROUND_TRIP)
    assert config.terms["auraloss_mrstft"].hop_sizes == (16, 32, 64)
    assert config.terms["auraloss_rrstft"].windows == ("hann_window", "kaiser_window")
    path = distill_core.dump_config(config, tmp_path / f"auraloss{suffix}")
    assert load_config(path) == config


BAD_CONFIGS = [
    (
        "auraloss_mrstft",
        {**SMALL_LISTS, "hop_sizes": [16, 300, 64]},
        "terms.auraloss_mrstft.hop_sizes[1]",
        "hop 300 exceeds win_lengths[1]=128; expected hop <= win",
    ),
    (
        "auraloss_mrstft",
        {**SMALL_LISTS, "win_lengths": [48, 128, 512]},
        "terms.auraloss_mrstft.win_lengths[2]",
        "window 512 exceeds fft_sizes[2]=256; expected win <= fft",
    ),
    (
        "auraloss_mrstft",
        {**SMALL_LISTS, "fft_sizes": [64, 0, 256]},
        "terms.auraloss_mrstft.fft_sizes[1]",
        "expected a positive integer, got 0",
    ),
    (
        "auraloss_mrstft",
        {**SMALL_LISTS, "hop_sizes": [16, 32]},
        "terms.auraloss_mrstft.hop_sizes",
        "fft_sizes has 3, hop_sizes has 2, win_lengths has 3",
    ),
    (
        "auraloss_mrstft",
        {**SMALL_LISTS, "window": "hanning"},
        "terms.auraloss_mrstft.window",
        "expected one of 'hann_window', 'bartlett_window'",
    ),
    (
        "auraloss_mrstft",
        {**SMALL_LISTS, "scale": "mel"},
        "terms.auraloss_mrstft.sample_rate",
        "scale = 'mel' builds a filterbank for a sample rate",
    ),
    (
        "auraloss_mrstft",
        {**SMALL_LISTS, "scale": "mel", "sample_rate": 16000, "n_bins": 100},
        "terms.auraloss_mrstft.n_bins",
        "n_bins 100 exceeds the FFT size 64",
    ),
    ("auraloss_stft", {"output": "full"}, "terms.auraloss_stft.output", "a distill term returns one 0-dim loss"),
    ("auraloss_stft", {"eps": 0.0}, "terms.auraloss_stft.eps", "expected a finite number > 0"),
    (
        "auraloss_stft",
        {"perceptual_weighting": True},
        "terms.auraloss_stft.sample_rate",
        "perceptual_weighting = true designs an A-weighting filter",
    ),
    ("auraloss_stft", {"w_sc": -1.0}, "terms.auraloss_stft.w_sc", "expected a finite number >= 0, got -1.0"),
    ("auraloss_stft", {"mag_distance": "L3"}, "terms.auraloss_stft.mag_distance", "expected one of 'L1', 'L2'"),
    (
        "auraloss_stft",
        {"scale_invariance": True},
        "terms.auraloss_stft.scale_invariance",
        "lines the per-signal scales up with the frequency axis",
    ),
    ("auraloss_esr", {"reduction": "none"}, "terms.auraloss_esr.reduction", "expected 'mean' or 'sum'"),
    ("auraloss_logcosh", {"a": 0.0}, "terms.auraloss_logcosh.a", "expected a finite number > 0, got 0.0"),
    ("auraloss_sisdr", {"zero_mean": "yes"}, "terms.auraloss_sisdr.zero_mean", "expected true or false"),
    ("auraloss_melstft", {"n_mels": 2048}, "terms.auraloss_melstft.n_mels", "n_mels 2048 exceeds the FFT size 1024"),
    ("auraloss_sdstft", {"w_diff": -2.0}, "terms.auraloss_sdstft.w_diff", "expected a finite number >= 0"),
    ("auraloss_rrstft", {"max_fft_size": 1000}, "terms.auraloss_rrstft.max_fft_size", "expected a power of two"),
    (
        "auraloss_rrstft",
        {"min_fft_size": 64, "max_fft_size": 64},
        "terms.auraloss_rrstft.max_fft_size",
        "expected max_fft_size > min_fft_size=64",
    ),
    (
        "auraloss_rrstft",
        {"min_hop_size": 0.5, "max_hop_size": 0.25},
        "terms.auraloss_rrstft.max_hop_size",
        "expected max_hop_size >= min_hop_size=0.5",
    ),
    ("auraloss_rrstft", {"min_hop_size": 0.01}, "terms.auraloss_rrstft.min_hop_size", "rounds to a hop of 0"),
    ("auraloss_rrstft", {"randomize_rate": 0}, "terms.auraloss_rrstft.randomize_rate", "expected a positive"),
    ("auraloss_rrstft", {"windows": []}, "terms.auraloss_rrstft.windows", "expected at least one window"),
    (
        "auraloss_rrstft",
        {"scale": "chroma", "sample_rate": 16000, "n_mels": 12},
        "terms.auraloss_rrstft.scale",
        "use auraloss_chromastft",
    ),
    (
        "auraloss_rrstft",
        {"scale": "mel", "sample_rate": 16000, "n_mels": 40},
        "terms.auraloss_rrstft.n_mels",
        "n_mels 40 exceeds min_fft_size 16",
    ),
    ("auraloss_rrstft", {"seed": -1}, "terms.auraloss_rrstft.seed", "numpy's seed range"),
    (
        "auraloss_melstft",
        {"sample_rate": 1e12},
        "terms.auraloss_melstft.sample_rate",
        "expected a sample rate in Hz above 0 and at most 1048576 (2^20), got 1000000000000.0",
    ),
    (
        "auraloss_melstft",
        {"sample_rate": 16000, "n_mels": 600},
        "terms.auraloss_melstft.n_mels",
        "n_mels = 600 at sample_rate = 16000 leaves 86 of 600 mel bands without any FFT bin at fft size 1024",
    ),
    (
        "auraloss_stft",
        {"scale": "mel", "sample_rate": 44100, "n_bins": 600},
        "terms.auraloss_stft.n_bins",
        "n_bins = 600 at sample_rate = 44100 leaves 172 of 600 mel bands without any FFT bin at fft size 1024",
    ),
    (
        "auraloss_mrstft",
        {"fft_sizes": [2**30, 2048, 512]},
        "terms.auraloss_mrstft.fft_sizes[0]",
        "expected a size <= 1048576 (2^20), got 1073741824",
    ),
    (
        "auraloss_stft",
        {"fft_size": 2**21, "win_length": 2**21},
        "terms.auraloss_stft.win_length",
        "expected a size <= 1048576 (2^20), got 2097152",
    ),
    (
        "auraloss_melstft",
        {"sample_rate": 16000, "fft_size": 2**20, "win_length": 2**20, "n_mels": 1000},
        "terms.auraloss_melstft.n_mels",
        "n_mels 1000 at fft size 1048576 asks for a 1000 x 524289 filterbank",
    ),
    ("auraloss_rrstft", {"sample_rate": 1e12}, "terms.auraloss_rrstft.sample_rate", "at most 1048576 (2^20)"),
    (
        "auraloss_rrstft",
        {"scale": "mel", "sample_rate": 16000, "n_mels": 16},
        "terms.auraloss_rrstft.n_mels",
        "n_mels = 16 at sample_rate = 16000 leaves 6 of 16 mel bands without any FFT bin at fft size 16",
    ),
    (
        "auraloss_rrstft",
        {"max_fft_size": 2**40},
        "terms.auraloss_rrstft.max_fft_size",
        "expected max_fft_size <= 2097152 (2^21: the largest FFT drawn, max_fft_size / 2, at most 2^20)",
    ),
]


@pytest.mark.parametrize("term,options,path,reason", BAD_CONFIGS, ids=[f"{b[2]}" for b in BAD_CONFIGS])
def test_config_errors_name_the_path(term, options, path, reason):
    with pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {term: options}})
    matching = [r for p, r in err.value.problems if p == path]
    assert matching, f"no problem at {path}: {err.value.problems}"
    assert reason in matching[0]


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidConfig) as err:
        da.MultiResolutionSTFTLossConfig(
            fft_sizes=(64, 128), hop_sizes=(80, 32), win_lengths=(64, 256), w_lin_mag=-1.0, reduction="none"
        )
    assert [p for p, _ in err.value.problems] == ["hop_sizes[0]", "win_lengths[1]", "w_lin_mag", "reduction"]


# --- refusals at build -------------------------------------------------------------------------------------


def build(term, options):
    return CombinedLoss(load_config({"recipe": "none", "terms": {term: options}}))


@pytest.mark.parametrize(
    "term,options",
    [
        ("auraloss_melstft", {"sample_rate": 16000}),
        ("auraloss_chromastft", {"sample_rate": 16000}),
        ("auraloss_stft", {"scale": "mel", "sample_rate": 16000, "n_bins": 64}),
        ("auraloss_mrstft", {"scale": "chroma", "sample_rate": 16000, "n_bins": 12}),
        ("auraloss_sdstft", {"scale": "mel", "sample_rate": 16000, "n_bins": 20}),
        ("auraloss_rrstft", {"scale": "mel", "sample_rate": 16000, "n_mels": 8, **RR}),
    ],
)
def test_filterbanks_without_librosa_are_refused_at_build_with_the_fix(monkeypatch, term, options):
    monkeypatch.setitem(sys.modules, "librosa", None)  # what `import librosa` sees when it is not installed
    monkeypatch.setitem(sys.modules, "librosa.filters", None)
    with pytest.raises(TermBuildError) as err:
        build(term, options)
    message = str(err.value)
    assert f"term {term!r} from distill-auraloss==0.1.0 failed to build: MissingDependency" in message
    assert "needs librosa" in message and "pip install librosa" in message
    assert "distill-auraloss[mel]" in message


def test_perceptual_weighting_without_scipy_is_refused_at_build(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.signal", None)
    with pytest.raises(da.MissingDependency, match="perceptual_weighting = true needs scipy.*pip install scipy"):
        da.STFTLossTerm(da.STFTLossConfig(perceptual_weighting=True, sample_rate=44100))


def test_linear_terms_need_neither_librosa_nor_scipy(monkeypatch):
    for module in ("librosa", "librosa.filters", "scipy", "scipy.signal"):
        monkeypatch.setitem(sys.modules, module, None)
    loss = build("auraloss_mrstft", SMALL_LISTS)
    x, y = waves((1, 1, 512))
    assert torch.isfinite(loss({"recon": x, "target": y})["auraloss_mrstft_loss"])


def test_empty_mel_bands_are_refused_where_auraloss_returns_nan():
    options = dict(sample_rate=16000, fft_size=128, hop_size=32, win_length=128, n_mels=64)
    with pytest.warns(UserWarning, match="Empty filters"):
        nan = auraloss.freq.MelSTFTLoss(**options)(*waves((1, 1, 1024)))
    assert torch.isnan(nan)  # auraloss's own result: log(0) in the empty bands
    with pytest.raises(
        ConfigError,
        match=r"terms.auraloss_melstft.n_mels: n_mels = 64 at sample_rate = 16000 "
        r"leaves [0-9]+ of 64 mel bands without any FFT bin at fft size 128 "
        r"\(auraloss would take log\(0\) there and return NaN\); expected a "
        r"smaller n_mels",
    ):
        load_config({"recipe": "none", "terms": {"auraloss_melstft": options}})  # what `distill-loss check` reads
    with pytest.raises(InvalidConfig, match="n_mels = 64 at sample_rate = 16000 leaves"):
        da.MelSTFTLossConfig(**options)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050, 44100, 1e5])
@pytest.mark.parametrize("fft_size", [64, 256, 1024, 4096])
def test_the_config_counts_empty_mel_bands_as_librosa_does(sample_rate, fft_size):
    import warnings

    import librosa

    counts = []
    for n_mels in sorted({8, 40, 128, 600, fft_size // 2, fft_size}):
        if n_mels <= fft_size:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # librosa warns about the empty bands counted here
                fb = librosa.filters.mel(sr=sample_rate, n_fft=fft_size, n_mels=n_mels)
            counts.append((da.checks.empty_mel_bands(sample_rate, fft_size, n_mels), int((fb.max(axis=1) == 0).sum())))
    assert all(ours == librosa_count for ours, librosa_count in counts), counts


def test_mel_and_chroma_need_a_sample_rate_in_the_file_and_at_build():
    for term, cls in (("auraloss_melstft", "MelSTFTLoss"), ("auraloss_chromastft", "ChromaSTFTLoss")):
        for options in ({}, {"sample_rate": None}):
            with pytest.raises(ConfigError) as err:
                load_config({"recipe": "none", "terms": {term: options}})
            assert err.value.problems == [
                (
                    f"terms.{term}.sample_rate",
                    f"missing: auraloss.freq.{cls} has no default "
                    "sample rate; expected the audio's sample rate in Hz (e.g. sample_rate = "
                    "44100)",
                )
            ]
        config = getattr(da, f"{cls}Config")()  # a config built in Python: refused when the term is built
        with pytest.raises(InvalidConfig, match="has no default sample rate; expected sample_rate = <Hz>"):
            getattr(da, f"{cls}Term")(config)


def test_a_missing_sample_rate_is_reported_with_the_other_problems():
    with pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {"auraloss_melstft": {"w_sc": -1.0}}})
    assert sorted(p for p, _ in err.value.problems) == [
        "terms.auraloss_melstft.sample_rate",
        "terms.auraloss_melstft.w_sc",
    ]


def test_auraloss_scale_invariance_is_broken_for_batches():
    """Why scale_invariance is refused: auraloss 0.4 fails (or, by shape coincidence, misscales) on B * C > 1."""
    loss = auraloss.freq.STFTLoss(128, 32, 128, scale_invariance=True)
    loss(*waves((1, 1, 512)))  # one signal: alpha broadcasts
    with pytest.raises(RuntimeError, match="must match the size"):
        loss(*waves((2, 1, 512)))


def test_auraloss_cannot_build_chroma_itself():
    """The quirk the chroma terms work around; when auraloss fixes it the terms use auraloss's class as is."""
    pytest.importorskip("librosa")
    if metadata.version("auraloss") != "0.4.0":
        pytest.skip("checks auraloss 0.4.0's ChromaSTFTLoss")
    with pytest.raises(TypeError, match="numpy.ndarray"):
        auraloss.freq.ChromaSTFTLoss(16000, 512, 128, 400)


# --- batches -----------------------------------------------------------------------------------------------


def test_sum_and_difference_needs_stereo_and_names_the_key():
    term = da.SumAndDifferenceSTFTLossTerm(da.SumAndDifferenceSTFTLossConfig(**SMALL))
    with pytest.raises(
        BatchError,
        match=r"auraloss_sdstft: batch\['recon'\] expected shape \[B, 2, N\] with 2 "
        r"channels in dim 1, got \[2, 1, 1024\]",
    ):
        term(dict(zip(("recon", "target"), waves((2, 1, 1024)))))


@pytest.mark.parametrize(
    "batch,message",
    [
        (
            {"recon": torch.randn(2, 1024), "target": torch.randn(2, 1024)},
            "batch['recon'] expected shape [B, C, N] (3-D), got [2, 1024] (2-D)",
        ),
        (
            {"recon": torch.randn(2, 1, 1024), "target": torch.randn(2, 1, 1000)},
            "batch['recon'] has shape [2, 1, 1024] but batch['target'] has [2, 1, 1000]",
        ),
        (
            {"recon": torch.randn(2, 1, 128), "target": torch.randn(2, 1, 128)},
            "has 128 samples per signal, too short for auraloss.freq.MultiResolutionSTFTLoss; expected at least 129",
        ),
    ],
)
def test_bad_batches_name_the_term_and_key(batch, message):
    term = da.MultiResolutionSTFTLossTerm(da.MultiResolutionSTFTLossConfig(**SMALL))
    with pytest.raises(BatchError) as err:
        term(batch)
    assert str(err.value).startswith("auraloss_mrstft: ") and message in str(err.value)


def test_half_precision_inputs_are_computed_in_float32():
    term = da.MelSTFTLossTerm(da.MelSTFTLossConfig(sample_rate=16000, **MEL, n_mels=32))
    x, y = waves((2, 1, 2048))
    low = term({"recon": x.bfloat16(), "target": y.bfloat16()})
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, term({"recon": x.bfloat16().float(), "target": y.bfloat16().float()}))


def test_float64_inputs_get_float64_filterbanks():
    config = da.MultiResolutionSTFTLossConfig(**SMALL, perceptual_weighting=True, sample_rate=16000)
    term = da.MultiResolutionSTFTLossTerm(config)
    x, y = waves((2, 1, 1024), dtype=torch.float64)
    out = term({"recon": x, "target": y})
    ref = auraloss.freq.MultiResolutionSTFTLoss(**SMALL_LISTS, perceptual_weighting=True, sample_rate=16000).double()
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref(x, y), rtol=1e-12, atol=0)


def test_filterbanks_are_not_state():
    term = da.MultiResolutionSTFTLossTerm(
        da.MultiResolutionSTFTLossConfig(
            fft_sizes=(256, 512), hop_sizes=(64, 128), win_lengths=(256, 512), scale="mel", sample_rate=16000, n_bins=20
        )
    )
    assert len(list(term.buffers())) == 2 and term.state_dict() == {}


def test_a_codec_style_combination():
    config = load_config(
        {
            "recipe": "none",
            "terms": {
                "auraloss_mrstft": {**SMALL_LISTS, "weight": 1.0},
                "auraloss_sisdr": {"weight": 0.1},
                "auraloss_esr": {"weight": 0.5},
            },
        }
    )
    loss = CombinedLoss(config)
    x, y = waves((2, 1, 2048))
    out = loss({"recon": x, "target": y})
    parts = {k: float(v) for k, v in out.items()}
    expected = parts["auraloss_mrstft_loss"] + 0.1 * parts["auraloss_sisdr_loss"] + 0.5 * parts["auraloss_esr_loss"]
    assert parts["total_loss"] == pytest.approx(expected, rel=1e-6)
    assert parts["auraloss_sisdr_loss"] == pytest.approx(float(auraloss.time.SISDRLoss()(x, y)), rel=1e-6)


def test_the_readme_config_builds_and_runs():
    import re
    from pathlib import Path

    import tomllib

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (block,) = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    loss = CombinedLoss(load_config(tomllib.loads(block)))
    x, y = waves((1, 1, 4096))
    out = loss({"recon": x, "target": y})
    assert {"auraloss_mrstft_loss", "auraloss_melstft_loss", "auraloss_sisdr_loss", "total_loss"} <= set(out)
    assert torch.isfinite(out["total_loss"]) and float(out["nonfinite"]) == 0
