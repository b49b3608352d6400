"""auraloss's remaining MultiResolutionSTFTLoss options: scale invariance, output = 'full', and their limits."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from distill_stft import COMPONENTS, STFTConfig, STFTLoss, auraloss_reference

from distill_core import BatchError, ConfigError, InvalidConfig, load_config
from distill_core.testing import check_term

SMALL = dict(fft_sizes=(64, 128, 256), hop_sizes=(16, 32, 64), win_lengths=(48, 128, 200))


def waves(b=1, c=1, n=1024, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, n, generator=g, dtype=dtype), torch.randn(b, c, n, generator=g, dtype=dtype)


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


def term_fn(config):
    term = STFTLoss(config)
    return lambda x, y: term({"recon": x, "target": y})


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"w_lin_mag": 1.0, "mag_distance": "L2"},
        {"w_phs": 0.5, "reduction": "sum"},
        {"scale": "mel", "sample_rate": 16000, "n_bins": 16, "w_lin_mag": 0.5},
    ],
    ids=["default", "lin-L2", "phs-sum", "mel"],
)
def test_scale_invariance_equals_auraloss_on_one_signal(options):
    """auraloss 0.4 broadcasts its scale correctly only for a single signal: compare there, fast vs auraloss."""
    if options.get("scale") == "mel":
        pytest.importorskip("librosa")
    cfg = STFTConfig(**SMALL, input="waveform", scale_invariance=True, **options)
    x, y = waves(n=1024)
    y = 0.3 * x + y  # a target the optimal scale changes visibly
    assert_parity(term_fn(cfg), lambda a, b: auraloss_reference(cfg)(a, b), x, y)
    assert_parity(
        term_fn(cfg),
        term_fn(STFTConfig(**SMALL, input="waveform", scale_invariance=True, backend="auraloss", **options)),
        x,
        y,
    )


def scale_invariant_reference(x, y, eps=1e-8):
    """From the definition, with autograd: per signal alpha = <|X|, |Y|> / <|Y|, |Y|> scales |Y|."""
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    total = 0.0
    for n_fft, hop, win in zip(*SMALL.values()):
        w = torch.hann_window(win).to(x.dtype)  # built in float32, as auraloss builds it
        mx = torch.stft(x, n_fft, hop, win, w, return_complex=True).abs().pow(2).clamp(min=eps).sqrt()
        my = torch.stft(y, n_fft, hop, win, w, return_complex=True).abs().pow(2).clamp(min=eps).sqrt()
        alpha = (mx * my).sum((1, 2), keepdim=True) / my.pow(2).sum((1, 2), keepdim=True)
        my = my * alpha
        total = total + (mx - my).norm() / my.norm() + (mx.log() - my.log()).abs().mean()
    return total / len(SMALL["fft_sizes"])


def test_scale_invariance_scales_each_signal_of_a_batch():
    """Where auraloss raises (B*C > 1), the fast path scales each signal by its own alpha."""
    cfg = STFTConfig(**SMALL, input="waveform", scale_invariance=True)
    x, y = waves(b=2, c=2, n=1024, dtype=torch.float64)
    y = y * torch.tensor([0.1, 1.0, 10.0, 3.0], dtype=y.dtype).view(2, 2, 1)
    assert_parity(
        lambda a, b: STFTLoss(cfg).double()({"recon": a, "target": b}), scale_invariant_reference, x, y, rtol=1e-9
    )
    with pytest.raises(Exception, match="must match the size"):
        auraloss_reference(cfg)(x.float(), y.float())


def test_scale_invariance_on_the_auraloss_backend_refuses_batches_it_would_break():
    term = STFTLoss(STFTConfig(**SMALL, input="waveform", scale_invariance=True, backend="auraloss"))
    x, y = waves(b=2)
    with pytest.raises(
        BatchError,
        match=r"scale_invariance with backend = 'auraloss' needs one signal per batch "
        r".*got batch\['recon'\] \[2, 1, \.\.\.\]; use backend = 'fast'",
    ):
        term({"recon": x, "target": y})


@pytest.mark.parametrize("backend", ["fast", "auraloss"])
def test_output_full_keeps_auraloss_components(backend):
    cfg = STFTConfig(**SMALL, input="waveform", output="full", w_lin_mag=0.5, w_phs=0.2, w_sc=0.0, backend=backend)
    x, y = waves(b=2, c=2)
    term = STFTLoss(cfg)
    assert term.components is None
    x.requires_grad_(True)
    loss = term({"recon": x, "target": y})
    theirs, *parts = auraloss_reference(cfg)(x, y)
    assert loss.dim() == 0
    torch.testing.assert_close(loss, theirs, rtol=1e-5, atol=0)
    assert term.components.shape == (len(COMPONENTS), 3) and not term.components.requires_grad
    expected = torch.tensor([[float(torch.as_tensor(v).detach()) for v in row] for row in parts])
    assert expected[0].eq(0).all() and expected[1:].gt(0).all()  # sc is off (weight 0), the others are on
    torch.testing.assert_close(term.components, expected, rtol=1e-5, atol=0)
    weights = torch.tensor([cfg.w_sc, cfg.w_log_mag, cfg.w_lin_mag, cfg.w_phs])
    torch.testing.assert_close((weights @ term.components).sum() / 3, loss.detach(), rtol=1e-5, atol=0)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_output_loss_keeps_no_components():
    term = STFTLoss(STFTConfig(**SMALL, input="waveform"))
    term({"recon": waves()[0], "target": waves()[1]})
    assert term.components is None


@pytest.mark.parametrize(
    "options,message",
    [
        ({"reduction": "none"}, "terms.stft.reduction: 'none' makes auraloss return per-bin tensors"),
        ({"reduction": "avg"}, "terms.stft.reduction: expected one of 'mean', 'sum', 'none', got 'avg'"),
        ({"output": "tuple"}, "terms.stft.output: expected one of 'loss', 'full', got 'tuple'"),
        (
            {"perceptual_weighting": True},
            "terms.stft.sample_rate: a positive sample_rate is required when perceptual_weighting = true",
        ),
        ({"w_phs": -1.0}, "terms.stft.w_phs: expected a finite number >= 0, got -1.0"),
    ],
)
def test_option_values_auraloss_cannot_run_are_config_errors(options, message):
    with pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {"stft": options}})
    assert message in str(err.value)


def test_perceptual_weighting_without_scipy_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.signal", None)  # what `import scipy.signal` meets when absent
    with pytest.raises(ImportError, match=r"perceptual_weighting = true needs scipy .* `pip install scipy`"):
        STFTLoss(STFTConfig(**SMALL, perceptual_weighting=True, sample_rate=16000))


def test_every_option_runs_on_the_fast_path():
    """No option sends the term to auraloss behind the user's back: backend = 'fast' is what builds."""
    cfg = STFTConfig(
        **SMALL,
        w_phs=1.0,
        perceptual_weighting=True,
        sample_rate=16000,
        scale_invariance=True,
        reduction="sum",
        output="full",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to announce: no fallback happens
        assert type(STFTLoss(cfg).loss).__name__ == "FastMultiResolutionSTFT"
    with pytest.raises(InvalidConfig):
        STFTConfig(reduction="none")


def test_conformance_with_every_option_on_short_signals():
    cfg = STFTConfig(
        fft_sizes=(32, 64),
        hop_sizes=(8, 16),
        win_lengths=(32, 48),
        w_lin_mag=0.5,
        w_phs=0.2,
        perceptual_weighting=True,
        sample_rate=16000,
        scale_invariance=True,
        reduction="sum",
        output="full",
    )

    def batch(dtype, device):  # [2, 2, 6, 8]: 48 samples per example, shorter than the largest FFT
        g = torch.Generator().manual_seed(3)
        return {k: (torch.rand(2, 2, 6, 8, generator=g, dtype=dtype) + 0.01).to(device) for k in ("recon", "target")}

    check_term(STFTLoss, batch, cfg)


def test_perceptual_weighting_on_the_auraloss_backend_names_a_dtype_mismatch():
    cfg = STFTConfig(**SMALL, input="waveform", perceptual_weighting=True, sample_rate=16000, backend="auraloss")
    x, y = waves(dtype=torch.float64)
    with pytest.raises(
        BatchError,
        match=r"filters in the module's dtype torch.float32, got batch\['recon'\] in "
        r"torch.float64; convert the term \(term.to\(torch.float64\)\)",
    ):
        STFTLoss(cfg)({"recon": x, "target": y})
    ours = STFTLoss(STFTConfig(**SMALL, input="waveform", perceptual_weighting=True, sample_rate=16000))
    torch.testing.assert_close(
        STFTLoss(cfg).double()({"recon": x, "target": y}), ours({"recon": x, "target": y}), rtol=1e-6, atol=0
    )
