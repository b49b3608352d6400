"""The mel term against a plain-autograd reference written from DAC's definition, plus its config and batch checks."""

from __future__ import annotations

import pytest
import torch
from distill_mel import MelConfig, MelLoss
from distill_mel.banded import BandedMatmul
from torch.nn import functional as F

import distill_core
from distill_core import BatchError, ConfigError, InvalidConfig, load_config
from distill_core.dsp.mel import mel_filterbank
from distill_core.testing import check_discovery, check_term

SMALL = dict(n_mels=(5, 10, 20), window_lengths=(32, 64, 128), sample_rate=16000)


def waves(b=2, c=1, n=3000, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, n, generator=g, dtype=dtype), torch.randn(b, c, n, generator=g, dtype=dtype)


def reference(
    x,
    y,
    n_mels,
    window_lengths,
    sample_rate,
    fmin=None,
    fmax=None,
    clamp_eps=1e-5,
    pow=1.0,
    log_weight=1.0,
    mag_weight=0.0,
):
    """DAC's MelSpectrogramLoss from its definition: per scale a centred, reflect-padded STFT with a periodic
    Hann window of length w (float32, as audiotools casts scipy's) and hop w // 4, |.|, mel filters, then L1
    of clamp/pow/log10 (and of the mels); summed over scales."""
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    fmin = fmin or [0.0] * len(n_mels)
    fmax = fmax or [sample_rate / 2] * len(n_mels)
    total = 0.0
    for m, w, lo, hi in zip(n_mels, window_lengths, fmin, fmax):
        window = torch.hann_window(w, dtype=torch.float64).float().to(x.dtype)
        fb = torch.from_numpy(mel_filterbank(sample_rate, w, m, fmin=lo, fmax=hi)).to(x.dtype)

        def mels(s):
            return (
                fb @ torch.stft(s, w, w // 4, window=window, center=True, pad_mode="reflect", return_complex=True).abs()
            )

        mx, my = mels(x), mels(y)
        log = lambda s: s.clamp(clamp_eps).pow(pow).log10()  # noqa: E731
        total = total + log_weight * F.l1_loss(log(mx), log(my)) + mag_weight * F.l1_loss(mx, my)
    return total


def value_and_grad(fn, x, y):
    x = x.clone().requires_grad_(True)
    v = fn(x, y)
    (g,) = torch.autograd.grad(2.5 * v, x)  # a weight upstream: backward must scale by grad_output
    return v.detach(), g


def term_fn(**options):
    term = MelLoss(MelConfig(**options))
    return lambda x, y: term({"recon": x, "target": y})


def reference_fn(**options):
    options = dict(options)
    fmin, fmax = options.pop("mel_fmin", None), options.pop("mel_fmax", None)
    options.pop("preset", None)
    return lambda x, y: reference(x, y, fmin=fmin, fmax=fmax, **options)


CASES = {
    "dac defaults": dict(
        n_mels=(5, 10, 20, 40, 80, 160, 320), window_lengths=(32, 64, 128, 256, 512, 1024, 2048), sample_rate=44100
    ),
    "small": SMALL,
    "pow 2, mag_weight 1": dict(SMALL, pow=2.0, mag_weight=1.0),
    "mag only": dict(SMALL, log_weight=0.0, mag_weight=0.5),
    "clamp bites": dict(SMALL, clamp_eps=3.0),
    "bands per scale": dict(SMALL, mel_fmin=(0.0, 300.0, 50.0), mel_fmax=(8000.0, 6000.0, 4000.0)),
    "odd windows, hop not dividing": dict(n_mels=(6, 12), window_lengths=(30, 67), sample_rate=22050),
}


def assert_equal_to_reference(options, x, y):
    """float32 term against the reference evaluated in float64 on the same inputs.

    Gradient tolerance: 3e-5 of the largest entry. Small mel values carry float32 FFT rounding that 1 / mel
    amplifies; at DAC's window 2048 that is 2.7e-5 here, while the reference's own float32 autograd is off by
    1.7e-4. In float64 the term equals the reference to 1e-15 (test_float64_equals_reference_to_rounding).
    """
    v1, g1 = value_and_grad(term_fn(**options), x, y)
    v2, g2 = (t.float() for t in value_and_grad(reference_fn(**options), x.double(), y.double()))
    torch.testing.assert_close(v1, v2, rtol=1e-5, atol=0)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=3e-5 * float(g2.abs().max()))


@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
def test_value_and_gradient_equal_the_autograd_reference(options):
    assert_equal_to_reference(options, *waves(b=2, c=2, n=2500))


@pytest.mark.parametrize(
    "options",
    [CASES["dac defaults"], dict(SMALL, pow=1.5, mag_weight=0.3)],
    ids=["dac defaults", "pow 1.5, mag_weight 0.3"],
)
def test_float64_equals_reference_to_rounding(options):
    x, y = waves(b=2, c=2, n=2500, dtype=torch.float64)
    term = MelLoss(MelConfig(**options)).double()
    v1, g1 = value_and_grad(lambda a, b: term({"recon": a, "target": b}), x, y)
    v2, g2 = value_and_grad(reference_fn(**options), x, y)
    torch.testing.assert_close(v1, v2, rtol=1e-12, atol=0)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12 * float(g2.abs().max()))


def test_shortest_signal_the_padding_allows():
    x, y = waves(b=1, n=65)  # the largest window 128 reflect-pads 64 samples each side
    assert_equal_to_reference(SMALL, x, y)
    with pytest.raises(
        BatchError,
        match=r"has 64 samples; the reflect padding of window_lengths\[2\]=128 needs "
        "more than 64",
    ):
        MelLoss(MelConfig(**SMALL))({"recon": x[..., :64], "target": y[..., :64]})


def test_silence_gives_the_reference_gradient():
    """Frames of digital silence have |X| = 0 exactly, where the gradient of |X| is 0 (torch.abs's)."""
    x, y = waves(b=2, c=1, n=2500)
    x[0, 0, 600:1900] = 0.0  # whole frames of silence at every scale
    x[1] = 0.0  # a silent signal
    v, g = value_and_grad(term_fn(**SMALL), x, y)
    assert torch.isfinite(g).all() and torch.count_nonzero(g[1]) == 0
    assert_equal_to_reference(SMALL, x, y)


def test_forward_and_backward_never_sync(sync_counter):
    from distill_core.testing import SYNC_METHODS

    x, y = waves()
    term = MelLoss(MelConfig(**dict(SMALL, mag_weight=0.5)))
    sync_counter.update(dict.fromkeys(SYNC_METHODS, 0))  # building the term may read tensors; a step may not
    term({"recon": x.requires_grad_(True), "target": y}).backward()
    assert sync_counter == {m: 0 for m in SYNC_METHODS}


def test_no_grad_path_equals_grad_path():
    x, y = waves()
    term = MelLoss(MelConfig(**SMALL))
    with torch.no_grad():
        plain = term({"recon": x, "target": y})
    torch.testing.assert_close(term({"recon": x.clone().requires_grad_(True), "target": y}).detach(), plain)


def test_dac_training_defaults():
    c = MelConfig()
    assert c.n_mels == (5, 10, 20, 40, 80, 160, 320)
    assert c.window_lengths == (32, 64, 128, 256, 512, 1024, 2048)
    assert (c.pow, c.clamp_eps, c.mag_weight, c.log_weight, c.sample_rate) == (1.0, 1e-5, 0.0, 1.0, 44100)
    assert c.fmins == (0.0,) * 7 and c.fmaxs == (22050.0,) * 7


def test_conformance():
    check_term(
        MelLoss,
        lambda dtype, device: dict(zip(("recon", "target"), (t.to(device) for t in waves(n=400, dtype=dtype)))),
        MelConfig(**SMALL),
    )


def test_discovered_with_distribution_and_version():
    assert str(check_discovery(MelLoss, "distill-mel").provenance) == "distill-mel==0.1.0"
    assert MelLoss.layouts == {"recon": "B, C, N", "target": "B, C, N"}


def mel_config(**mel):
    return load_config({"recipe": "none", "terms": {"mel": mel}})


def test_config_round_trips_through_a_file(tmp_path):
    c = mel_config(n_mels=[8, 16], window_lengths=[64, 256], mel_fmin=[0, 40], mel_fmax=[8000, 11025], pow=2.0)
    assert load_config(distill_core.dump_config(c, tmp_path / "mel.toml")) == c
    assert load_config(distill_core.dump_config(mel_config(), tmp_path / "default.toml")) == mel_config()


CONFIG_ERRORS = [
    (
        {"n_mels": [5, 10], "window_lengths": [32, 64, 128]},
        "terms.mel.n_mels: expected one entry per scale: n_mels has 2, window_lengths has 3",
    ),
    ({"window_lengths": 512}, "terms.mel.window_lengths:"),
    ({"window_lengths": [512, "a"]}, "terms.mel.window_lengths[1]: expected int, got 'a'"),
    (
        {"n_mels": [5, 10], "window_lengths": [32, 64], "mel_fmax": [8000]},
        "terms.mel.mel_fmax: expected one entry per scale: n_mels has 2, window_lengths has 2, mel_fmax has 1",
    ),
    ({"n_mels": [], "window_lengths": []}, "terms.mel.n_mels: expected at least one scale"),
    ({"n_mels": [5, 0], "window_lengths": [2, 64]}, "terms.mel.window_lengths[0]: expected a window of at least 4"),
    ({"n_mels": [5, 0], "window_lengths": [32, 64]}, "terms.mel.n_mels[1]: expected at least 1 mel band, got 0"),
    (
        {"n_mels": [5], "window_lengths": [32], "mel_fmax": [30000]},
        "terms.mel.mel_fmax[0]: expected mel_fmin[0]=0.0 < mel_fmax <= sample_rate / 2 = 22050.0, got 30000.0",
    ),
    ({"n_mels": [5], "window_lengths": [32], "mel_fmin": [-1]}, "terms.mel.mel_fmin[0]: expected a frequency >= 0"),
    ({"clamp_eps": 0}, "terms.mel.clamp_eps: expected a finite number > 0, got 0.0"),
    ({"pow": -1}, "terms.mel.pow: expected a finite number > 0"),
    ({"mag_weight": -1}, "terms.mel.mag_weight: expected a finite number >= 0"),
    ({"sample_rate": 0}, "terms.mel.sample_rate: expected a sample rate in Hz from 1 to 1048576 (2^20), got 0"),
    (
        {"sample_rate": 10**20},
        "terms.mel.sample_rate: expected a sample rate in Hz from 1 to 1048576 (2^20), got 100000000000000000000",
    ),
    ({"sample_rate": 1e20}, "terms.mel.sample_rate: expected int, got 1e+20"),
    (
        {"n_mels": [1000000], "window_lengths": [2048]},
        "terms.mel.n_mels[0]: expected at most window_lengths[0]=2048 mel bands (the FFT size), got 1000000",
    ),
    (
        {"n_mels": [5, 40], "window_lengths": [32, 2**30]},
        "terms.mel.window_lengths[1]: expected a window of at most 1048576 samples (2^20), got 1073741824",
    ),
    (
        {"n_mels": [100000], "window_lengths": [2**18]},
        "terms.mel.n_mels[0]: 100000 bands at window_lengths[0]=262144 ask for a 100000 x 131073 filterbank; "
        "expected n_mels * (fft // 2 + 1) <= 67108864 (2^26)",
    ),
    ({"preset": "encodec"}, "terms.mel.preset: expected one of 'dac', got 'encodec'"),
    ({"window_length": [32]}, "terms.mel.window_length: unknown key; did you mean 'window_lengths'?"),
]


@pytest.mark.parametrize("mel,message", CONFIG_ERRORS, ids=[m for _, m in CONFIG_ERRORS])
def test_config_errors_name_the_path(mel, message):
    with pytest.raises(ConfigError) as err:
        mel_config(**mel)
    assert message in str(err.value)


def test_config_class_raises_invalid_config():
    with pytest.raises(InvalidConfig, match="window_lengths"):
        MelConfig(n_mels=(5,), window_lengths=(32, 64))


BAD = [
    (
        {"recon": torch.rand(2, 64, 10), "target": torch.rand(2, 2, 64, 10)},
        "mel: batch['target'] expected shape [B, C, N] (3-D), got [2, 2, 64, 10] (4-D)",
    ),
    (
        {"recon": torch.rand(2, 1, 500), "target": torch.rand(2, 1, 400)},
        "mel: batch['recon'] has shape [2, 1, 500] but batch['target'] has [2, 1, 400]",
    ),
    (
        {"recon": torch.ones(2, 1, 500, dtype=torch.int64), "target": torch.rand(2, 1, 500)},
        "expected a floating dtype, got torch.int64",
    ),
    (
        {"recon": torch.rand(2, 1, 500), "target": torch.rand(2, 1, 500).requires_grad_(True)},
        "mel: batch['target'] requires grad, but the mel term treats the target as a constant; pass target.detach()",
    ),
]


@pytest.mark.parametrize("batch,message", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_batches_name_term_key_and_shape(batch, message):
    with pytest.raises(BatchError) as err:
        MelLoss(MelConfig(**SMALL))(batch)
    assert message in str(err.value)


def test_identical_signals_give_zero_and_a_zero_gradient():
    x, _ = waves()
    x.requires_grad_(True)
    out = MelLoss(MelConfig(**SMALL))({"recon": x, "target": x.detach()})
    out.backward()
    assert float(out.detach()) == 0.0 and torch.count_nonzero(x.grad) == 0


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax",
    [
        (44100, 2048, 320, 0.0, None),
        (16000, 512, 40, 300.0, 5000.0),
        (22050, 67, 12, 0.0, None),
        (44100, 32, 5, 0.0, None),
    ],
)
def test_banded_products_equal_the_dense_ones(sr, n_fft, n_mels, fmin, fmax):
    fb = torch.from_numpy(mel_filterbank(sr, n_fft, n_mels, fmin=fmin, fmax=fmax)).double()
    mag = torch.rand(2, 7, fb.shape[1], dtype=torch.float64)
    grad = torch.randn(2, 7, n_mels, dtype=torch.float64)
    torch.testing.assert_close(BandedMatmul(fb.T)(mag), mag @ fb.T, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(BandedMatmul(fb)(grad), grad @ fb, rtol=1e-12, atol=1e-15)


def test_dac_largest_scale_skips_the_zeros():
    fb = torch.from_numpy(mel_filterbank(44100, 2048, 320))
    for matrix in (fb.T, fb):
        spans = BandedMatmul(matrix).spans
        assert sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in spans) < 0.2 * fb.numel()  # 13% with 8 blocks


def test_a_bound_is_the_only_problem_reported():
    """The class's own problems alone: not re-checked with the offending field at its default (7 windows)."""
    with pytest.raises(ConfigError) as err:
        mel_config(n_mels=[80], window_lengths=[2**30])
    assert err.value.problems == [
        ("terms.mel.window_lengths[0]", "expected a window of at most 1048576 samples (2^20), got 1073741824")
    ]
    with pytest.raises(ConfigError) as err:  # field type errors still come with the class's other problems
        mel_config(n_mels=["many"], clamp_eps=0)
    assert [p for p, _ in err.value.problems] == ["terms.mel.n_mels[0]", "terms.mel.clamp_eps"]


def test_discovery_leaves_the_closed_form_losses_unloaded():
    """A fresh process: discovery registers the terms by name and imports neither their classes nor their
    configs; listing the terms loads those, and building a term loads its loss."""
    import os
    import subprocess
    import sys

    script = (
        "import sys, distill_core\nregistry = distill_core.get_registry()\n"
        "assert 'mel' in registry and 'audiocraft_msspec' in registry\n"
        "print(sorted(m for m in ('distill_mel.terms', 'distill_mel.config') if m in sys.modules))\n"
        "assert {'mel', 'audiocraft_msspec'} <= set(registry.terms)\n"
        "print(sorted(m for m in ('distill_mel.fast', 'distill_mel.audiocraft') if m in sys.modules))\n"
        "import distill_mel\nterm = distill_mel.MelLoss(distill_mel.MelConfig())\n"
        "print(type(term.loss) is distill_mel.MultiScaleMel, distill_mel.AudiocraftMel.__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DISTILL_PLUGINS": "distill-mel"},
    ).stdout.split("\n")
    assert out[:3] == ["[]", "[]", "True distill_mel.audiocraft"]
