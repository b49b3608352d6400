"""The audiocraft_msspec term against audiocraft's definition written as plain autograd, plus its config bounds."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from distill_mel import AudiocraftConfig, AudiocraftMsspecLoss
from distill_mel.audiocraft import whole_frames
from torch.nn import functional as F

from distill_core import BatchError, ConfigError, load_config
from distill_core.testing import check_discovery, check_term

ALSA = Path("/usr/share/sounds/alsa")
SMALL = dict(sample_rate=16000, range_start=4, range_end=7, n_mels=12)


def reference(
    x,
    y,
    sample_rate=24000,
    range_start=6,
    range_end=11,
    n_mels=64,
    f_min=64.0,
    f_max=None,
    normalized=True,
    alphas=False,
    floor_level=1e-5,
):
    """audiocraft 1.3.0's MultiScaleMelSpectrogramLoss from its code (losses/specloss.py): per scale 2^i a reflect
    padding of (w - hop) // 2, zeros to whole frames (modules/conv.py pad_for_conv1d), torchaudio's
    MelSpectrogram without centring (periodic Hann window, |X|^2 divided by sum(window^2) when normalized,
    HTK filters without normalisation: librosa's htk=True, norm=None), L1 of the mels plus alpha times MSE of
    log10(floor + mel); divided by sum(alpha + 1) when normalized."""
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    f_max = float(sample_rate // 2) if f_max is None else f_max
    loss, total = 0.0, 0.0
    for i in range(range_start, range_end):
        w = 2**i
        hop = int(w / 4)
        window = torch.hann_window(w).to(x.dtype)  # torchaudio's window_fn(win_length): float32
        fb = torch.from_numpy(
            librosa.filters.mel(sr=sample_rate, n_fft=w, n_mels=n_mels, fmin=f_min, fmax=f_max, htk=True, norm=None)
        ).to(x.dtype)

        def mel(s):
            p = (w - hop) // 2
            s = F.pad(s.unsqueeze(1), (p, p), "reflect")
            frames = math.ceil((s.shape[-1] - w) / hop + 1)
            s = F.pad(s, (0, (frames - 1) * hop + w - s.shape[-1])).squeeze(1)
            spec = torch.stft(s, w, hop, win_length=w, window=window, center=False, return_complex=True)
            if normalized:
                spec = spec / window.pow(2.0).sum().sqrt()
            return torch.matmul(spec.abs().pow(2.0).transpose(-1, -2), fb.T).transpose(-1, -2)

        alpha = math.sqrt(w - 1) if alphas else 1.0
        total += alpha + 1
        mx, my = mel(x), mel(y)
        loss = (
            loss + F.l1_loss(mx, my) + alpha * F.mse_loss(torch.log10(floor_level + mx), torch.log10(floor_level + my))
        )
    return loss / total if normalized else loss


def waves(b=2, c=1, n=3000, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, n, generator=g, dtype=dtype), torch.randn(b, c, n, generator=g, dtype=dtype)


def value_and_grad(fn, x, y):
    x = x.clone().requires_grad_(True)
    v = fn(x, y)
    (g,) = torch.autograd.grad(2.5 * v, x)  # a weight upstream: backward must scale by grad_output
    return v.detach(), g


def term_fn(**options):
    term = AudiocraftMsspecLoss(AudiocraftConfig(**options))
    return lambda x, y: term({"recon": x, "target": y.to(x.dtype)}).to(x.dtype)


def assert_equal_to_reference(options, x, y):
    """The float32 term against the same definition run by autograd in float32: value and gradient to 1e-5
    (of the largest gradient entry); seen: 1.3e-7 and 3.2e-7.

    Against a float64 evaluation both differ alike (gradients by up to 1.6e-5 of the largest entry, where
    1 / (floor + mel) amplifies float32 FFT rounding): that is float32's limit, not the term's. In float64
    the term equals the reference to rounding (test_float64_equals_reference_to_rounding).
    """
    v1, g1 = value_and_grad(term_fn(**options), x, y)
    v2, g2 = value_and_grad(lambda a, b: reference(a, b, **options), x, y)
    torch.testing.assert_close(v1, v2, rtol=1e-5, atol=0)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-5 * float(g2.abs().max()))


CASES = {
    "compression solver defaults, 24 kHz": dict(sample_rate=24000),
    "class defaults (f_min 0, alphas, not normalized), 32 kHz": dict(
        sample_rate=32000, f_min=0.0, alphas=True, normalized=False
    ),
    "small, f_max below Nyquist": dict(SMALL, f_max=5000.0),
    "many empty filters (64 bands at window 16)": dict(
        sample_rate=16000, range_start=4, range_end=6, n_mels=16, f_min=0.0
    ),
    "large floor": dict(SMALL, floor_level=0.3, alphas=True),
}


@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
def test_value_and_gradient_equal_the_autograd_reference(options):
    assert_equal_to_reference(options, *waves(b=2, c=2, n=2500))


@pytest.mark.parametrize("n", [385, 1000, 1024, 1031])
def test_frame_tails_of_every_length(n):
    """Lengths whose frames end on the last sample at some scales and need a zero tail at others."""
    assert_equal_to_reference(dict(sample_rate=24000), *waves(b=1, c=1, n=n, seed=n))


def test_float64_equals_reference_to_rounding():
    for options in (dict(sample_rate=24000), dict(sample_rate=32000, f_min=0.0, alphas=True, normalized=False)):
        x, y = waves(b=2, c=1, n=2000, dtype=torch.float64)
        term = AudiocraftMsspecLoss(AudiocraftConfig(**options)).double()
        v1, g1 = value_and_grad(lambda a, b: term({"recon": a, "target": b}), x, y)
        v2, g2 = value_and_grad(lambda a, b: reference(a, b, **options), x, y)
        torch.testing.assert_close(v1, v2, rtol=1e-12, atol=0)
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12 * float(g2.abs().max()))


def read_wav(path: Path) -> torch.Tensor:
    with wave.open(str(path)) as f:
        assert f.getsampwidth() == 2
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").reshape(-1, f.getnchannels())
    return torch.from_numpy(pcm[:, 0].astype(np.float32) / 32768)


@pytest.mark.skipif(
    not (ALSA / "Front_Center.wav").is_file(),
    reason="alsa-utils' voice recordings (/usr/share/sounds/alsa) are not installed",
)
def test_real_speech_against_a_degraded_copy():
    speech = read_wav(ALSA / "Front_Center.wav")[:24000]  # 0.5 s of a voice at 48 kHz
    g = torch.Generator().manual_seed(1)
    degraded = 0.7 * speech + 0.01 * torch.randn(speech.shape, generator=g)
    x, y = degraded.view(1, 1, -1), speech.view(1, 1, -1)
    assert_equal_to_reference(dict(sample_rate=48000), x, y)
    assert_equal_to_reference(dict(sample_rate=48000, f_min=0.0, alphas=True, normalized=False), x, y)


def test_whole_frames_is_audiocrafts_padding():
    for length, w in [(1000, 64), (1024, 64), (1023, 1024), (1024, 1024), (1025, 1024), (5, 16)]:
        hop = w // 4
        frames = math.ceil((length - w) / hop + 1)
        assert whole_frames(length, w, hop) == (frames - 1) * hop + w - length


def test_defaults_are_the_compression_solvers_msspec():
    c = AudiocraftConfig()
    assert (c.range_start, c.range_end, c.n_mels, c.f_min, c.f_max) == (6, 11, 64, 64.0, None)
    assert (c.normalized, c.alphas, c.floor_level, c.sample_rate) == (True, False, 1e-5, 24000)
    assert c.window_lengths == (64, 128, 256, 512, 1024) and c.fmax == 12000.0


def test_every_combination_of_normalized_and_alphas_equals_the_reference():
    """normalized scales the spectra and divides by sum(alpha + 1); alphas weighs the log part by sqrt(w - 1)."""
    x, y = waves(n=2000)
    values = set()
    for alphas in (False, True):
        for normalized in (False, True):
            term = AudiocraftMsspecLoss(AudiocraftConfig(alphas=alphas, normalized=normalized))
            value = float(term({"recon": x, "target": y}))
            expected = reference(x.double(), y.double(), 24000, alphas=alphas, normalized=normalized)
            assert value == pytest.approx(float(expected), rel=1e-5)
            values.add(round(value, 6))
    assert len(values) == 4  # each option changes the loss


def test_shortest_signal_the_padding_allows():
    x, y = waves(b=1, n=385)  # the window 1024 reflect-pads (1024 - 256) // 2 = 384 samples each side
    assert_equal_to_reference({}, x, y)
    with pytest.raises(
        BatchError,
        match=r"audiocraft_msspec: batch\['recon'\] has 384 samples; the reflect "
        r"padding of \(w - w // 4\) // 2 = 384 for the window 2\^10 needs more "
        r"than 384",
    ):
        AudiocraftMsspecLoss(AudiocraftConfig())({"recon": x[..., :384], "target": y[..., :384]})


def test_target_requiring_grad_is_refused():
    x, y = waves()
    with pytest.raises(
        BatchError,
        match=r"audiocraft_msspec: batch\['target'\] requires grad, but the "
        r"audiocraft_msspec term treats the target as a constant; pass "
        r"target.detach\(\)",
    ):
        AudiocraftMsspecLoss(AudiocraftConfig(**SMALL))({"recon": x, "target": y.requires_grad_(True)})


def test_silence_gives_the_reference_gradient():
    x, y = waves(b=2, c=1, n=2500)
    x[0, 0, 600:1900] = 0.0
    x[1] = 0.0
    v, g = value_and_grad(term_fn(**SMALL), x, y)
    assert torch.isfinite(g).all()
    assert_equal_to_reference(SMALL, x, y)


def test_forward_and_backward_never_sync(sync_counter):
    from distill_core.testing import SYNC_METHODS

    x, y = waves()
    term = AudiocraftMsspecLoss(AudiocraftConfig(**dict(SMALL, alphas=True)))
    sync_counter.update(dict.fromkeys(SYNC_METHODS, 0))
    term({"recon": x.requires_grad_(True), "target": y}).backward()
    assert sync_counter == {m: 0 for m in SYNC_METHODS}


def test_no_grad_path_equals_grad_path():
    x, y = waves()
    term = AudiocraftMsspecLoss(AudiocraftConfig(**SMALL))
    with torch.no_grad():
        plain = term({"recon": x, "target": y})
    torch.testing.assert_close(term({"recon": x.clone().requires_grad_(True), "target": y}).detach(), plain)


def test_conformance():
    check_term(
        AudiocraftMsspecLoss,
        lambda dtype, device: dict(zip(("recon", "target"), (t.to(device) for t in waves(n=400, dtype=dtype)))),
        AudiocraftConfig(**SMALL),
    )


def test_discovered_with_distribution_and_version():
    assert str(check_discovery(AudiocraftMsspecLoss, "distill-mel").provenance) == "distill-mel==0.1.0"


def msspec_config(**options):
    return load_config({"recipe": "none", "terms": {"audiocraft_msspec": options}})


def test_config_round_trips_through_a_file(tmp_path):
    import distill_core

    c = msspec_config(sample_rate=32000, range_start=5, range_end=9, n_mels=32, f_max=15000.0, alphas=True)
    assert load_config(distill_core.dump_config(c, tmp_path / "msspec.toml")) == c


CONFIG_ERRORS = [
    (
        {"sample_rate": 10**12},
        "terms.audiocraft_msspec.sample_rate: expected a sample rate in Hz from 1 to 1048576 (2^20), got 1000000000000",
    ),
    ({"sample_rate": 1e12}, "terms.audiocraft_msspec.sample_rate: expected int, got 1000000000000.0"),
    ({"sample_rate": 0}, "terms.audiocraft_msspec.sample_rate: expected a sample rate in Hz from 1 to 1048576"),
    ({"range_start": 1}, "terms.audiocraft_msspec.range_start: expected 2 <= range_start <= 20"),
    ({"range_end": 31}, "terms.audiocraft_msspec.range_end: expected range_start=6 < range_end <= 21"),
    ({"range_start": 8, "range_end": 8}, "terms.audiocraft_msspec.range_end: expected range_start=8 < range_end"),
    ({"n_mels": 0}, "terms.audiocraft_msspec.n_mels: expected at least 1 mel band, got 0"),
    ({"n_mels": 100}, "terms.audiocraft_msspec.n_mels: expected at most 2^6=64 mel bands (the FFT size), got 100"),
    (
        {"range_start": 16, "range_end": 21, "n_mels": 1000},
        "terms.audiocraft_msspec.n_mels: 1000 bands at 2^18=262144 ask for a 1000 x 131073 filterbank; expected "
        "n_mels * (fft // 2 + 1) <= 67108864 (2^26)",
    ),
    ({"floor_level": 0.0}, "terms.audiocraft_msspec.floor_level: expected a finite number > 0"),
    ({"f_min": -1.0}, "terms.audiocraft_msspec.f_min: expected a frequency >= 0 Hz, got -1.0"),
    ({"f_max": 20000.0}, "terms.audiocraft_msspec.f_max: expected f_min=64.0 < f_max=20000.0 <= sample_rate / 2"),
    ({"f_min": 13000.0}, "terms.audiocraft_msspec.f_min: expected f_min=13000.0 < f_max=12000.0"),
    ({"alpha": True}, "terms.audiocraft_msspec.alpha: unknown key; did you mean 'alphas'?"),
]


@pytest.mark.parametrize("options,message", CONFIG_ERRORS, ids=[m.split(": ")[1][:40] for _, m in CONFIG_ERRORS])
def test_config_errors_name_the_path_and_the_bound(options, message):
    with pytest.raises(ConfigError) as err:
        msspec_config(**options)
    assert message in str(err.value)
