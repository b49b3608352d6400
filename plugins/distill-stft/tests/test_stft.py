"""The stft term against auraloss (the oracle) and an independent reference, plus its batch checks."""

from __future__ import annotations

import pytest
import torch
from distill_stft import STFTConfig, STFTLoss, auraloss_reference

import distill_core
from distill_core import BatchError, ConfigError, InvalidConfig, load_config
from distill_core.testing import check_discovery, check_term

SMALL = dict(fft_sizes=(64, 128, 256), hop_sizes=(16, 32, 64), win_lengths=(48, 128, 200))
MEL = dict(fft_sizes=(256, 512, 1024), hop_sizes=(64, 128, 256), win_lengths=(256, 400, 1024))


def waves(b=2, c=1, n=1024, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, n, generator=g, dtype=dtype), torch.randn(b, c, n, generator=g, dtype=dtype)


def spectrograms(b=2, f=32, t=64, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(b, 2, f, t, generator=g, dtype=dtype) + 0.01
    y = torch.rand(b, 2, f, t, generator=g, dtype=dtype) + 0.01
    return r, y


def reference(x, y, fft_sizes, hop_sizes, win_lengths, eps=1e-8):
    """Written from the definition: per resolution SC + mean |log|X| - log|Y||, mean over resolutions."""
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    total = 0.0
    for n_fft, hop, win in zip(fft_sizes, hop_sizes, win_lengths):
        w = torch.hann_window(win, dtype=x.dtype)
        mx = torch.stft(x, n_fft, hop, win, w, return_complex=True).abs().pow(2).clamp(min=eps).sqrt()
        my = torch.stft(y, n_fft, hop, win, w, return_complex=True).abs().pow(2).clamp(min=eps).sqrt()
        sc = torch.sqrt(((my - mx) ** 2).sum()) / torch.sqrt((my**2).sum())
        total = total + sc + (mx.log() - my.log()).abs().mean()
    return total / len(fft_sizes)


def value_and_grad(fn, x, y):
    x = x.clone().requires_grad_(True)
    v = fn(x, y)
    (g,) = torch.autograd.grad(v, x)
    return v.detach(), g


def assert_parity(ours, theirs, x, y, rtol=1e-5):
    v1, g1 = value_and_grad(ours, x, y)
    v2, g2 = value_and_grad(theirs, x, y)
    torch.testing.assert_close(v1, v2, rtol=rtol, atol=0)
    torch.testing.assert_close(g1, g2, rtol=rtol, atol=rtol * float(g2.abs().max()))


def auraloss_fn(config):
    """auraloss itself as a function of (x, y) returning the loss (the first element when output = 'full')."""
    module = auraloss_reference(config)

    def loss(x, y):
        out = module(x, y)
        return (out[0] if isinstance(out, tuple) else out).clamp(min=0)

    return loss


def term_fn(config):
    term = STFTLoss(config)
    return lambda x, y: term({"recon": x, "target": y})


def test_magnitude_input_matches_reference_and_auraloss():
    cfg = STFTConfig(**SMALL)
    recon, target = spectrograms()
    out = STFTLoss(cfg)({"recon": recon, "target": target})
    flat = lambda s: s[:, 0].reshape(s.shape[0], 1, -1)  # noqa: E731
    ref = reference(flat(recon).double(), flat(target).double(), **SMALL)
    assert abs(float(out) - float(ref)) <= 1e-6 * float(ref)
    torch.testing.assert_close(out, auraloss_reference(cfg)(flat(recon), flat(target)), rtol=1e-6, atol=0)


def test_default_resolutions_match_auraloss_on_the_seed_layout():
    cfg = STFTConfig()
    recon, target = spectrograms(b=2, f=32, t=80)  # F*T = 2560 >= 2048
    flat = lambda s: s[:, 0].reshape(s.shape[0], 1, -1)  # noqa: E731
    v = STFTLoss(cfg)({"recon": recon, "target": target})
    torch.testing.assert_close(v, auraloss_reference(cfg)(flat(recon), flat(target)), rtol=1e-6, atol=0)


COMBINATIONS = [
    {},
    {"window": "hamming_window"},
    {"window": "blackman_window"},
    {"window": "bartlett_window"},
    {"window": "kaiser_window"},
    {"w_sc": 0.0},
    {"w_log_mag": 0.0},
    {"w_lin_mag": 1.0},
    {"w_sc": 0.5, "w_log_mag": 2.0, "w_lin_mag": 0.3},
    {"mag_distance": "L2"},
    {"mag_distance": "L2", "w_lin_mag": 1.0},
    {"scale": "mel", "sample_rate": 16000, "n_bins": 32},
    {"scale": "mel", "sample_rate": 22050, "n_bins": 40, "w_lin_mag": 1.0, "mag_distance": "L2"},
    {"w_phs": 1.0},
    {"w_phs": 0.7, "w_sc": 0.0, "w_log_mag": 0.0},
    {"perceptual_weighting": True, "sample_rate": 16000},
    {"perceptual_weighting": True, "sample_rate": 44100, "w_lin_mag": 1.0, "w_phs": 0.5},
    {"reduction": "sum"},
    {"reduction": "sum", "mag_distance": "L2", "w_lin_mag": 1.0},
    {"output": "full", "w_lin_mag": 0.5, "w_phs": 0.1},
    {"scale": "mel", "sample_rate": 16000, "n_bins": 32, "perceptual_weighting": True, "reduction": "sum"},
]


@pytest.mark.parametrize("options", COMBINATIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_waveform_parity_with_auraloss_value_and_gradient(options):
    if options.get("scale") == "mel":
        pytest.importorskip("librosa")
    sizes = MEL if options.get("scale") == "mel" else SMALL
    cfg = STFTConfig(**sizes, input="waveform", **options)
    x, y = waves(b=2, c=2, n=2048)
    assert_parity(term_fn(cfg), auraloss_fn(cfg), x, y)


def test_auraloss_backend_is_auraloss():
    cfg = STFTConfig(**SMALL, input="waveform", backend="auraloss")
    x, y = waves()
    term = STFTLoss(cfg)
    assert type(term.loss).__module__ == "auraloss.freq"
    assert_parity(term_fn(cfg), term_fn(STFTConfig(**SMALL, input="waveform")), x, y)


def test_mel_filterbank_equals_librosa():
    librosa = pytest.importorskip("librosa")
    from distill_core.dsp.mel import mel_filterbank

    for sr, n_fft, n_mels in [(16000, 512, 40), (22050, 1024, 80), (44100, 2048, 128)]:
        ours = mel_filterbank(sr, n_fft, n_mels)
        theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
        assert abs(ours - theirs).max() <= 1e-6 * abs(theirs).max()


def test_if_channel_does_not_change_stft_loss():
    term = STFTLoss(STFTConfig(**SMALL))
    recon, target = spectrograms()
    other = recon.clone()
    other[:, 1] = torch.randn_like(other[:, 1]) * 100
    assert torch.equal(term({"recon": recon, "target": target}), term({"recon": other, "target": target}))


def test_gradient_reaches_magnitude_only():
    term = STFTLoss(STFTConfig(**SMALL))
    recon, target = spectrograms()
    recon.requires_grad_(True)
    term({"recon": recon, "target": target}).backward()
    assert recon.grad[:, 0].abs().sum() > 0
    assert torch.count_nonzero(recon.grad[:, 1]) == 0


def test_float64_gradcheck():
    term = STFTLoss(STFTConfig(**SMALL, input="waveform")).double()
    x, y = waves(b=1, n=300, dtype=torch.float64)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: term({"recon": a, "target": y}), (x,))


def test_conformance():
    cfg = STFTConfig(**SMALL)
    check_term(
        STFTLoss,
        lambda dtype, device: dict(zip(("recon", "target"), (t.to(device) for t in spectrograms(dtype=dtype)))),
        cfg,
    )


BAD = [
    (
        {"recon": torch.rand(2, 32, 64), "target": torch.rand(2, 2, 32, 64)},
        "batch['recon'] expected shape [B, 2, F, T] (4-D), got [2, 32, 64] (3-D)",
    ),
    (
        {"recon": torch.rand(2, 3, 32, 64), "target": torch.rand(2, 3, 32, 64)},
        "with 2 channels in dim 1, got [2, 3, 32, 64]",
    ),
    (
        {"recon": torch.rand(2, 2, 32, 64), "target": torch.rand(3, 2, 32, 64)},
        "batch['recon'] has shape [2, 2, 32, 64] but batch['target'] has [3, 2, 32, 64]",
    ),
    (
        {"recon": torch.ones(2, 2, 32, 64, dtype=torch.int64), "target": torch.rand(2, 2, 32, 64)},
        "expected a floating dtype, got torch.int64",
    ),
    ({"recon": torch.rand(0, 2, 32, 64), "target": torch.rand(0, 2, 32, 64)}, "is empty"),
    (
        {"recon": torch.rand(2, 2, 8, 16), "target": torch.rand(2, 2, 8, 16)},
        "batch['recon'] flattened magnitude channel (F*T samples) has 128 samples, shorter than the largest FFT "
        "size 256 allows: expected more than fft_sizes[2] // 2 = 128 samples",
    ),
    ({"recon": [1.0], "target": torch.rand(2, 2, 8, 8)}, "expected a tensor [B, 2, F, T], got list"),
]


@pytest.mark.parametrize("batch,message", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_input_names_term_key_and_shapes(batch, message):
    with pytest.raises(BatchError) as err:
        STFTLoss(STFTConfig(**SMALL))(batch)
    assert str(err.value).startswith("stft")
    assert message in str(err.value)


def test_waveform_mode_checks():
    term = STFTLoss(STFTConfig(**SMALL, input="waveform"))
    with pytest.raises(BatchError, match=r"expected shape \[B, C, N\] \(3-D\), got \[2, 2, 32, 64\]"):
        term({"recon": torch.rand(2, 2, 32, 64), "target": torch.rand(2, 2, 32, 64)})
    with pytest.raises(
        BatchError,
        match=r"waveform has 100 samples, shorter than the largest FFT size 256 allows: "
        r"expected more than fft_sizes\[2\] // 2 = 128 samples",
    ):
        term({"recon": torch.rand(2, 1, 100), "target": torch.rand(2, 1, 100)})


def test_config_checks_raise_invalid_config():
    with pytest.raises(InvalidConfig, match="hop_sizes"):
        STFTConfig(fft_sizes=(512,), hop_sizes=(128, 256), win_lengths=(512,))


def test_discovered_with_distribution_and_version():
    assert str(check_discovery(STFTLoss, "distill-stft").provenance) == "distill-stft==0.1.0"


def test_config_round_trip_through_a_file(tmp_path):
    c = load_config(
        {
            "recipe": "none",
            "terms": {
                "stft": {**{k: list(v) for k, v in SMALL.items()}, "scale": "mel", "sample_rate": 16000, "n_bins": 20}
            },
        }
    )
    path = distill_core.dump_config(c, tmp_path / "stft.toml")
    assert load_config(path) == c
    with pytest.raises(ConfigError, match="terms.stft.n_bins: n_bins 300 exceeds the smallest FFT size 64"):
        load_config(
            {
                "terms": {
                    "stft": {
                        **{k: list(v) for k, v in SMALL.items()},
                        "scale": "mel",
                        "sample_rate": 16000,
                        "n_bins": 300,
                    }
                }
            }
        )


def test_target_with_grad_needs_the_auraloss_backend():
    x, y = waves()
    y.requires_grad_(True)
    with pytest.raises(ValueError, match="fast backend treats target as a constant; use backend = 'auraloss'"):
        STFTLoss(STFTConfig(**SMALL, input="waveform"))({"recon": x.requires_grad_(True), "target": y})
    out = STFTLoss(STFTConfig(**SMALL, input="waveform", backend="auraloss"))({"recon": x, "target": y})
    out.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_no_grad_path_equals_grad_path():
    x, y = waves()
    term = STFTLoss(STFTConfig(**SMALL, input="waveform"))
    with torch.no_grad():
        plain = term({"recon": x, "target": y})
    torch.testing.assert_close(term({"recon": x.clone().requires_grad_(True), "target": y}).detach(), plain)
