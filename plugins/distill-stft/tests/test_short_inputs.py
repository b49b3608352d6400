"""Signals shorter than the FFT: accepted whenever torch.stft's reflect padding works (N > fft // 2)."""

from __future__ import annotations

import auraloss
import pytest
import torch
from distill_stft import STFTConfig, STFTLoss, auraloss_reference

from distill_core import BatchError


def waves(n, b=2, c=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, n, generator=g), torch.randn(b, c, n, generator=g)


def value_and_grad(fn, x, y):
    x = x.clone().requires_grad_(True)
    v = fn(x, y)
    (g,) = torch.autograd.grad(v, x)
    return v.detach(), g


RESOLUTIONS = [
    dict(fft_sizes=(64, 128, 256), hop_sizes=(16, 32, 64), win_lengths=(48, 128, 200)),
    dict(fft_sizes=(255, 100), hop_sizes=(60, 33), win_lengths=(201, 100)),  # odd FFT, hop not dividing it
]


@pytest.mark.parametrize("sizes", RESOLUTIONS, ids=["even", "odd"])
@pytest.mark.parametrize("extra", [0, 1, 37, -1], ids=["fft/2+1", "fft/2+2", "fft/2+38", "fft-1"])
def test_short_signal_equals_auraloss(sizes, extra):
    fft = max(sizes["fft_sizes"])
    n = fft - 1 if extra == -1 else fft // 2 + 1 + extra
    cfg = STFTConfig(**sizes, input="waveform", w_lin_mag=0.5, w_phs=0.2)
    x, y = waves(n)
    v1, g1 = value_and_grad(lambda a, b: STFTLoss(cfg)({"recon": a, "target": b}), x, y)
    v2, g2 = value_and_grad(auraloss_reference(cfg), x, y)
    torch.testing.assert_close(v1, v2, rtol=1e-5, atol=0)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-5 * float(g2.abs().max()))


def test_half_the_fft_is_refused_naming_key_length_and_bound():
    term = STFTLoss(STFTConfig(fft_sizes=(64, 255), hop_sizes=(16, 60), win_lengths=(64, 201), input="waveform"))
    x, y = waves(127)
    with pytest.raises(
        BatchError,
        match=r"^stft: batch\['recon'\] waveform has 127 samples, .* expected more "
        r"than fft_sizes\[1\] // 2 = 127 samples",
    ):
        term({"recon": x, "target": y})
    with pytest.raises(RuntimeError, match="Padding size should be less than"):  # where torch.stft draws the line
        auraloss_reference(term.config)(x, y)
    assert torch.isfinite(term({"recon": waves(128)[0], "target": waves(128)[1]}))


def test_compute_combined_loss_on_the_seed_spectrogram_shape():
    """[2, 2, 32, 40] spectrograms flatten to 1280 samples, fewer than the default largest FFT (2048)."""
    from distill_core.loss.config import LossConfig
    from distill_core.models import compute_combined_loss

    g = torch.Generator().manual_seed(1)
    recon = torch.rand(2, 2, 32, 40, generator=g) + 0.01
    target = torch.rand(2, 2, 32, 40, generator=g) + 0.01
    mu, logvar = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    out = compute_combined_loss(recon, target, mu, logvar, LossConfig(), 0.01)
    seed_stft = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[512, 1024, 2048], hop_sizes=[128, 256, 512], win_lengths=[512, 1024, 2048]
    )
    flat = lambda s: s[:, 0:1].reshape(2, 1, -1)  # noqa: E731
    torch.testing.assert_close(out["stft_loss"], seed_stft(flat(recon), flat(target)), rtol=1e-6, atol=0)
    assert torch.isfinite(out["total_loss"])
