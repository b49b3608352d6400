"""Objective distances between a reference waveform and its reconstruction, by their published definitions.

Every function takes ``reference`` and ``estimate`` as [B, N] float tensors at one sample rate and returns
one value per clip, [B]. They are evaluation metrics (run once over a held-out set), not training losses.
"""

from __future__ import annotations

import math

import torch

from distill_core.dsp.mel import mel_filterbank
from distill_core.training.speech_metrics import installed as installed_speech_metrics


def _magnitude(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """|STFT| with a Hann window of n_fft, centred frames: [B, n_fft // 2 + 1, frames]."""
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    return torch.stft(x, n_fft, hop, window=window, return_complex=True).abs()


def log_spectral_distance(
    reference: torch.Tensor, estimate: torch.Tensor, n_fft: int = 2048, hop: int = 512, floor: float = 1e-10
) -> torch.Tensor:
    """Log-spectral distance in dB (lower is better; 0 for identical signals).

    LSD = mean over frames t of sqrt(mean over bins f of (10 log10 P(t, f) - 10 log10 P_hat(t, f))^2), with
    P the power spectrum |STFT|^2 floored at ``floor``: the definition of Gray & Markel, "Distance measures
    for speech processing", IEEE Trans. ASSP 24(5), 1976, in the frame-averaged form used for audio
    super-resolution by Kuleshov et al., "Audio super-resolution using neural networks", ICLR workshop 2017.
    """
    p = _magnitude(reference, n_fft, hop).pow(2).clamp(min=floor)
    q = _magnitude(estimate, n_fft, hop).pow(2).clamp(min=floor)
    diff = 10 * (torch.log10(p) - torch.log10(q))
    return diff.pow(2).mean(dim=1).sqrt().mean(dim=-1)


def multi_resolution_stft_distance(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """auraloss' MultiResolutionSTFTLoss with its defaults (lower is better): per resolution, spectral
    convergence plus the L1 distance of log magnitudes, averaged over FFT sizes 1024/2048/512 (Yamamoto et
    al., "Parallel WaveGAN", ICASSP 2020, eq. 4-6; Steinmetz & Reiss, "auraloss", DMRN+15, 2020)."""
    from auraloss.freq import MultiResolutionSTFTLoss

    loss = MultiResolutionSTFTLoss().to(reference.device)
    return torch.stack([loss(e[None, None], r[None, None]) for r, e in zip(reference, estimate)])


def mel_distance(
    reference: torch.Tensor,
    estimate: torch.Tensor,
    sample_rate: int,
    n_fft: int = 1024,
    hop: int = 256,
    mel_bins: int = 80,
    floor: float = 1e-5,
) -> torch.Tensor:
    """Mean absolute difference of natural-log mel spectrograms (lower is better): the mel-spectrogram loss of
    HiFi-GAN (Kong et al., NeurIPS 2020, sec. 2.3) with its analysis settings (1024-point FFT, hop 256, 80
    Slaney mel bands up to Nyquist, log of the magnitude clamped at 1e-5)."""
    fb = torch.from_numpy(mel_filterbank(sample_rate, n_fft, mel_bins)).to(reference)
    ref = torch.log(torch.matmul(fb, _magnitude(reference, n_fft, hop)).clamp(min=floor))
    est = torch.log(torch.matmul(fb, _magnitude(estimate, n_fft, hop)).clamp(min=floor))
    return (ref - est).abs().mean(dim=(1, 2))


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB (higher is better), Le Roux et al., "SDR - half-baked
    or well done?", ICASSP 2019, eq. 1: zero-mean signals, the target is the reference scaled by
    alpha = <estimate, reference> / ||reference||^2, SI-SDR = 10 log10(||alpha s||^2 / ||alpha s - estimate||^2)."""
    s = reference - reference.mean(dim=-1, keepdim=True)
    s_hat = estimate - estimate.mean(dim=-1, keepdim=True)
    alpha = (s_hat * s).sum(dim=-1, keepdim=True) / (s.pow(2).sum(dim=-1, keepdim=True) + eps)
    target = alpha * s
    noise = target - s_hat
    return 10 * torch.log10((target.pow(2).sum(dim=-1) + eps) / (noise.pow(2).sum(dim=-1) + eps))


def spectral_convergence(
    reference: torch.Tensor, estimate: torch.Tensor, n_fft: int = 1024, hop: int = 256
) -> torch.Tensor:
    """Spectral convergence of the STFT magnitude, || |S| - |S_hat| ||_F / || |S| ||_F (lower is better):
    Arik et al., "Fast spectrogram inversion using multi-head convolutional neural networks", IEEE Signal
    Processing Letters 26(1), 2019, eq. 7."""
    ref = _magnitude(reference, n_fft, hop)
    est = _magnitude(estimate, n_fft, hop)
    return (ref - est).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp(min=1e-12)


#: table column -> (function of (reference, estimate, sample_rate), True where higher is better)
METRICS = {
    "LSD (dB)": (lambda r, e, sr: log_spectral_distance(r, e), False),
    "MR-STFT": (lambda r, e, sr: multi_resolution_stft_distance(r, e), False),
    "mel L1": (lambda r, e, sr: mel_distance(r, e, sr), False),
    "SI-SDR (dB)": (lambda r, e, sr: si_sdr(r, e), True),
    "spectral convergence": (lambda r, e, sr: spectral_convergence(r, e), False),
    **installed_speech_metrics(),  # PESQ, STOI, ESTOI where their packages are installed (the [metrics] extra)
}


def evaluate(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> dict[str, list[float]]:
    """Every metric in METRICS, per clip, as Python floats (an evaluation, once per run: no training step)."""
    with torch.no_grad():
        out = {name: fn(reference, estimate, sample_rate).double().tolist() for name, (fn, _) in METRICS.items()}
    return {name: [v if math.isfinite(v) else math.nan for v in values] for name, values in out.items()}
