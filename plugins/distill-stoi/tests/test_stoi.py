"""The stoi and estoi terms against pystoi 0.4.1 on real speech and noise, their gradients, configs and checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from distill_stoi import ESTOIConfig, ESTOILoss, OctaveResample, STOIConfig, STOILoss
from distill_stoi.intelligibility import frame_window, kept_frames
from pystoi import stoi as pystoi_score
from scipy.signal import butter, sosfiltfilt

from distill_core import BatchError, ConfigError, InvalidConfig, load_config
from distill_core.testing import SYNC_METHODS, check_discovery, check_term

from .conftest import at_rate

TERMS = {"stoi": (STOILoss, STOIConfig, False), "estoi": (ESTOILoss, ESTOIConfig, True)}


def degraded(clean: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """clean plus white noise at ``snr_db``."""
    noise = np.random.default_rng(seed).standard_normal(clean.shape)
    return clean + noise * np.linalg.norm(clean) / np.linalg.norm(noise) * 10 ** (-snr_db / 20)


def burst_noise(n: int, rate: int, seed: int = 1) -> np.ndarray:
    """White noise under a slow on/off envelope: loud, quiet (-60 dB) and silent stretches."""
    t = np.arange(n) / rate
    envelope = np.where(np.sin(2 * np.pi * 1.3 * t) > -0.3, 1.0, 1e-3)
    envelope[int(0.45 * n) : int(0.55 * n)] = 0.0
    return 0.3 * envelope * np.random.default_rng(seed).standard_normal(n)


def term_score(name: str, clean: np.ndarray, processed: np.ndarray, rate: int, dtype=torch.float32) -> float:
    """The term's score (1 - loss) for one pair of 1-D signals."""
    cls, config, _ = TERMS[name]
    term = cls(config(sample_rate=rate)).to(dtype)
    batch = {
        "recon": torch.from_numpy(processed).to(dtype)[None, None],
        "target": torch.from_numpy(clean).to(dtype)[None, None],
    }
    return 1 - float(term(batch))


def reference_score(name: str, clean: np.ndarray, processed: np.ndarray, rate: int, dtype=np.float32) -> float:
    """pystoi's score of the same numbers the term sees (float32 inputs widened to float64)."""
    return pystoi_score(
        clean.astype(dtype).astype(np.float64),
        processed.astype(dtype).astype(np.float64),
        rate,
        extended=TERMS[name][2],
    )


def pairs(speech: list[np.ndarray]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for i, clean in enumerate(speech):
        for snr in (20.0, 0.0, -5.0):
            out.append((f"clip {i} at {snr:g} dB", clean, degraded(clean, snr, seed=i)))
    clean = speech[0]
    out.append(("clip 0 low-passed", clean, np.convolve(clean, np.ones(9) / 9, mode="same")))
    out.append(("clip 0 against unrelated noise", clean, degraded(np.zeros_like(clean) + 1e-3, 0.0)))
    return out


@pytest.mark.parametrize("name", TERMS)
def test_equals_pystoi_on_alsa_speech_at_16khz(name, alsa_speech):
    """Required: within 0.005. Both resample with Octave's filter, so the difference is float32 rounding."""
    for label, clean, processed in pairs(alsa_speech):
        ours, ref = term_score(name, clean, processed, 16_000), reference_score(name, clean, processed, 16_000)
        assert abs(ours - ref) < 1e-5, f"{label}: {ours} vs pystoi {ref}"


def low_passed(x: np.ndarray, rate: int, cutoff: float = 1_000.0) -> np.ndarray:
    """x through an 8th-order Butterworth low-pass at ``cutoff`` Hz, forwards and backwards (zero phase)."""
    return sosfiltfilt(butter(8, cutoff, fs=rate, output="sos"), x).copy()  # a copy: filtfilt returns a reversed view


@pytest.mark.parametrize("rate", [8_000, 10_000, 16_000, 22_050, 44_100, 48_000])
@pytest.mark.parametrize("name", TERMS)
def test_equals_pystoi_in_float32_on_low_passed_speech(name, rate, alsa_voices):
    """A recon low-passed at 1 kHz: its upper bands lie about 150 dB down, where float32 rounding of a
    waveform sample adds as much as they hold. Computed in float32 throughout, the term was up to 2.2e-5 to
    5e-4 from pystoi (ESTOI at 48 kHz the worst); the issue asks for 5e-5 (pystoi itself moves by 2 to 5e-5
    when its input is perturbed at float32 rounding). Now the steps up to the band energies run in float64
    and the difference is float32 rounding of the segment statistics, about 1e-7."""
    for i, (voice, source_rate) in enumerate(alsa_voices):
        clean = at_rate(voice, source_rate, rate)
        processed = low_passed(clean, rate)
        ours, ref = term_score(name, clean, processed, rate), reference_score(name, clean, processed, rate)
        assert abs(ours - ref) < 1e-6, f"voice {i} at {rate} Hz: {ours} vs pystoi {ref}"


@pytest.mark.parametrize("rate", [8_000, 10_000, 16_000, 22_050, 44_100, 48_000])
@pytest.mark.parametrize("name", TERMS)
def test_equals_pystoi_in_float32_on_low_passed_espeak_speech(name, rate, espeak_voice):
    """As above with espeak-ng's sentence (so the check runs where alsa-utils is absent). Before the float64
    steps, float32 throughout was 3e-6 to 8.8e-5 from pystoi here (ESTOI at 48 kHz the worst); now under 1e-7."""
    clean = at_rate(*espeak_voice, rate)
    processed = low_passed(clean, rate)
    ours, ref = term_score(name, clean, processed, rate), reference_score(name, clean, processed, rate)
    assert abs(ours - ref) < 1e-6, f"espeak-ng at {rate} Hz: {ours} vs pystoi {ref}"


@pytest.mark.parametrize("name", TERMS)
def test_equals_pystoi_on_espeak_speech_at_16khz_in_float64(name, espeak_speech):
    for label, clean, processed in pairs([espeak_speech]):
        ours = term_score(name, clean, processed, 16_000, dtype=torch.float64)
        ref = reference_score(name, clean, processed, 16_000, dtype=np.float64)
        assert abs(ours - ref) < 1e-9, f"{label}: {ours} vs pystoi {ref}"


@pytest.mark.parametrize("name", TERMS)
def test_equals_pystoi_at_10khz_without_resampling(name, alsa_speech, espeak_speech):
    """Required: within 1e-4."""
    for label, clean, processed in pairs([at_rate(x, 16_000, 10_000) for x in alsa_speech[:1] + [espeak_speech]]):
        ours, ref = term_score(name, clean, processed, 10_000), reference_score(name, clean, processed, 10_000)
        assert abs(ours - ref) < 1e-5, f"{label}: {ours} vs pystoi {ref}"


@pytest.mark.parametrize("rate", [10_000, 16_000, 48_000])
@pytest.mark.parametrize("name", TERMS)
def test_equals_pystoi_on_noise_with_silent_stretches(name, rate):
    clean = burst_noise(int(1.5 * rate), rate)
    for snr in (10.0, -3.0):
        processed = degraded(clean, snr, seed=7)
        ours = term_score(name, clean, processed, rate, dtype=torch.float64)
        ref = reference_score(name, clean, processed, rate, dtype=np.float64)
        assert abs(ours - ref) < 1e-9, f"{snr} dB at {rate} Hz: {ours} vs pystoi {ref}"


@pytest.mark.parametrize("rate", [8_000, 22_050, 48_000])
def test_the_wide_resampler_is_float64_with_a_float32_gradient(rate):
    """The term resamples float32 inputs in float64 (matrix products) and backpropagates in float32; its taps
    stay float64 through .float() (rounded per phase, they would mirror a band into the empty ones)."""
    resample = OctaveResample(rate, 10_000).float()
    assert resample.kernels.dtype == resample.weights.dtype == torch.float64
    torch.manual_seed(0)
    x = torch.randn(2, 3, rate // 2 + 7, requires_grad=True)
    wide, exact = resample(x, torch.float64), resample(x.double())
    assert wide.dtype == torch.float64 and wide.shape == exact.shape == (2, 3, resample.output_length(x.shape[-1]))
    assert float((wide - exact).detach().abs().max()) < 1e-14 * float(exact.detach().abs().max())
    grad = torch.randn_like(exact)
    (wide_grad,) = torch.autograd.grad(wide, x, grad)
    (exact_grad,) = torch.autograd.grad(exact, x, grad)
    assert wide_grad.dtype == torch.float32
    assert float((wide_grad - exact_grad).abs().max()) < 1e-6 * float(exact_grad.abs().max())


def test_the_noise_case_removes_frames():
    """The silent-frame removal is exercised: the burst noise loses its quiet and silent frames."""
    clean = torch.from_numpy(burst_noise(15_000, 10_000))[None]
    _, _, kept = kept_frames(clean, clean, frame_window().double(), 40.0)
    assert 0.4 * 116 < int(kept) < 0.8 * 116  # 116 frames in 15000 samples


@pytest.mark.parametrize("name", TERMS)
def test_rows_of_one_batch_keep_their_own_frames(name, alsa_speech):
    """Rows lose different numbers of frames; each row's score is still pystoi's for that row alone."""
    n = min(len(x) for x in alsa_speech)
    clean = np.stack([x[:n] for x in alsa_speech] + [burst_noise(n, 16_000)])
    processed = np.stack([degraded(x, snr, seed=3) for x, snr in zip(clean, (15.0, 0.0, -5.0, 5.0))])
    cls, config, extended = TERMS[name]
    term = cls(config(sample_rate=16_000)).double()
    rows = torch.from_numpy(clean)[:, None], torch.from_numpy(processed)[:, None]
    ours = 1 - float(term({"recon": rows[1], "target": rows[0]}))
    ref = np.mean([pystoi_score(c, p, 16_000, extended=extended) for c, p in zip(clean, processed)])
    assert abs(ours - ref) < 1e-9
    clean_10k = term.resample(rows[0][:, 0])
    _, _, kept = kept_frames(clean_10k, clean_10k, frame_window().double(), 40.0)
    assert len(set(kept.tolist())) > 1, kept  # the rows do lose different numbers of frames


@pytest.mark.parametrize("name", TERMS)
def test_too_few_loud_frames_score_as_pystoi_does(name):
    """A target loud for under 31 frames: pystoi returns 1e-5 (and warns); the term's score is 1e-5 too."""
    clean = np.zeros(20_000)
    clean[5_000:8_000] = np.random.default_rng(0).standard_normal(3_000)
    processed = degraded(clean, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert reference_score(name, clean, processed, 16_000, dtype=np.float64) == 1e-5
    assert term_score(name, clean, processed, 16_000, dtype=torch.float64) == pytest.approx(1e-5, abs=1e-15)


@pytest.mark.parametrize("rate", [10_000, 16_000])
@pytest.mark.parametrize("name", TERMS)
def test_a_nan_or_an_inf_in_either_input_makes_that_example_nan(name, rate):
    """Silence removal drops frames of a target holding a NaN (its level compares false), which scored 1e-5:
    a plausible loss of 0.99999. Now the example's loss is NaN, wherever the value lies (the last sample is
    read by no analysis frame), and the other examples keep their values."""
    cls, config, _ = TERMS[name]
    term = cls(config(sample_rate=rate))
    batch = noise_batch(term.min_samples + 300, torch.float32, torch.device("cpu"))
    clean = term.per_example(batch)
    assert torch.isfinite(clean).all()
    for key in ("target", "recon"):
        for bad in (float("nan"), float("inf"), -float("inf")):
            for where in (1_000, -1):
                broken = {k: v.clone() for k, v in batch.items()}
                broken[key][1, 0, where] = bad
                per_example = term.per_example(broken)
                assert torch.isnan(per_example[1]), (key, bad, where, per_example)
                assert per_example[0] == clean[0]
                assert torch.isnan(term(broken))


def test_a_nonfinite_input_is_counted_by_the_combined_loss():
    """CombinedLoss's nonfinite flag (the steps a trainer skips) sees the NaN the terms return."""
    from distill_core import CombinedLoss

    loss = CombinedLoss(load_config({"recipe": "none", "terms": {"stoi": {}, "estoi": {"weight": 0.5}}}))
    batch = noise_batch(8_000, torch.float32, torch.device("cpu"))
    out = loss(batch)
    assert float(out["nonfinite"]) == 0.0 and torch.isfinite(out["total_loss"])
    batch["target"][0, 0, 4_000] = float("nan")
    out = loss(batch)
    assert torch.isnan(out["stoi_loss"]) and torch.isnan(out["estoi_loss"]) and torch.isnan(out["total_loss"])
    assert float(out["nonfinite"]) == 1.0


@pytest.mark.parametrize("name", TERMS)
def test_identity_scores_one(name, alsa_speech):
    clean = alsa_speech[0]
    assert term_score(name, clean, clean, 16_000) == pytest.approx(1.0, abs=1e-6)


def noise_batch(n: int, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """[2, 1, n] recon and target: the target with a quiet stretch that silence removal drops."""
    target = torch.randn(2, 1, n, dtype=dtype)
    target[0, :, n // 3 : n // 2] *= 1e-3
    recon = target + 0.7 * torch.randn(2, 1, n, dtype=dtype)
    return {"recon": recon.to(device), "target": target.to(device)}


@pytest.mark.parametrize("name", TERMS)
def test_conformance(name):
    cls, config, _ = TERMS[name]
    check_term(cls, lambda dtype, device: noise_batch(5_000, dtype, device), config(sample_rate=10_000))


@pytest.mark.parametrize("rate", [10_000, 16_000])
@pytest.mark.parametrize("name", TERMS)
def test_gradcheck_in_float64(name, rate):
    """gradcheck through resampling and silence removal: fast mode over the whole recon, and the full Jacobian
    over 24 samples in a loud stretch and 24 in the quiet one (whose frames are dropped: gradient 0)."""
    cls, config, _ = TERMS[name]
    term = cls(config(sample_rate=rate)).double()
    torch.manual_seed(0)
    batch = noise_batch(term.min_samples * 3 // 2, torch.float64, torch.device("cpu"))  # 45 frames, ~12 quiet
    recon, target = batch["recon"][:1], batch["target"][:1]
    assert float(term({"recon": recon, "target": target})) < 0.9  # enough loud frames: not pystoi's 1e-5 case
    assert torch.autograd.gradcheck(
        lambda r: term({"recon": r, "target": target}), (recon.clone().requires_grad_(True),), fast_mode=True
    )
    n = recon.shape[-1]
    loud, quiet = slice(n // 6, n // 6 + 24), slice(5 * n // 12, 5 * n // 12 + 24)  # quiet: n / 3 to n / 2

    def on_slices(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        r = recon.clone()
        r[..., loud], r[..., quiet] = a, b
        return term({"recon": r, "target": target})

    inputs = tuple(recon[..., s].clone().requires_grad_(True) for s in (loud, quiet))
    assert torch.autograd.gradcheck(on_slices, inputs)
    grads = torch.autograd.grad(on_slices(*inputs), inputs)
    assert grads[0].abs().min() > 0 and grads[1].abs().max() < 1e-3 * grads[0].abs().max()


@pytest.mark.parametrize("name", TERMS)
def test_forward_and_backward_never_sync(name, sync_counter):
    cls, config, _ = TERMS[name]
    term = cls(config())
    batch = noise_batch(8_000, torch.float32, torch.device("cpu"))
    sync_counter.update(dict.fromkeys(SYNC_METHODS, 0))  # building the term may read tensors; a step may not
    recon = batch["recon"].requires_grad_(True)
    term({"recon": recon, "target": batch["target"]}).backward()
    assert sync_counter == {m: 0 for m in SYNC_METHODS}
    assert recon.grad.abs().sum() > 0


def test_a_few_gradient_steps_raise_pystoi_stoi(alsa_speech):
    """The loss is usable: Adam on a noisy recon for 15 steps raises the reference's own STOI."""
    clean = alsa_speech[0][:16_000]
    noisy = degraded(clean, -5.0)
    recon = torch.from_numpy(noisy).float()[None, None].requires_grad_(True)
    target = torch.from_numpy(clean).float()[None, None]
    term = STOILoss(STOIConfig())
    opt = torch.optim.Adam([recon], lr=1e-3)
    for _ in range(15):
        opt.zero_grad()
        term({"recon": recon, "target": target}).backward()
        opt.step()
    before = pystoi_score(clean, noisy, 16_000)
    after = pystoi_score(clean, recon.detach().double().numpy()[0, 0], 16_000)
    assert after > before + 0.05, (before, after)


def test_discovered_with_distribution_and_version():
    for cls in (STOILoss, ESTOILoss):
        assert str(check_discovery(cls, "distill-stoi").provenance) == "distill-stoi==0.1.0"


def test_short_input_is_refused_naming_the_length_needed():
    term = STOILoss(STOIConfig())
    assert term.min_samples == 6554  # 4097 samples at 10 kHz: 31 frames of 256 at hop 128
    x = torch.randn(1, 1, 6553)
    with pytest.raises(
        BatchError,
        match=r"stoi: batch\['recon'\] has 6553 samples at sample_rate=16000; expected "
        r"at least 6554 \(0\.410 s\) for one 30-frame segment",
    ):
        term({"recon": x, "target": x})
    term({"recon": torch.randn(1, 1, 6554), "target": torch.randn(1, 1, 6554)})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"sample_rate": 16},
            "terms.stoi.sample_rate: expected a sample rate in Hz between 1000 and 384000 "
            "(16 looks like kHz: 16000?), got 16",
        ),
        (
            {"sample_rate": 44},
            "terms.stoi.sample_rate: expected a sample rate in Hz between 1000 and 384000 "
            "(44 looks like kHz: 44100?), got 44",
        ),
        ({"sample_rate": 0}, "terms.stoi.sample_rate: expected a sample rate in Hz between 1000 and 384000, got 0"),
        (
            {"sample_rate": 768_000},
            "terms.stoi.sample_rate: expected a sample rate in Hz between 1000 and 384000, got 768000",
        ),
        (
            {"sample_rate": 12345},
            "terms.stoi.sample_rate: resampling 12345 Hz to 10000 Hz needs a filter of 5118000 taps",
        ),
        ({"dyn_range": -1.0}, "terms.stoi.dyn_range: expected a finite number of dB > 0, got -1.0"),
        ({"beta": float("nan")}, "terms.stoi.beta: expected a finite number of dB in [-100, 100], got nan"),
    ],
)
def test_config_errors_name_the_field(section, message):
    with pytest.raises(ConfigError) as info:
        load_config({"recipe": "none", "terms": {"stoi": section}})
    assert message in str(info.value)


@pytest.mark.parametrize("name", TERMS)
def test_a_rate_in_khz_is_refused_by_both_terms(name):
    """The issue's case: 16 typed for 16000 was valid, and the loss returned 0.959."""
    with pytest.raises(ConfigError) as info:
        load_config({"recipe": "none", "terms": {name: {"sample_rate": 16}}})
    assert info.value.one_line() == (
        f"invalid loss config: terms.{name}.sample_rate: expected a sample rate in Hz between 1000 and "
        "384000 (16 looks like kHz: 16000?), got 16"
    )
    for rate in (1_000, 8_000, 384_000):
        assert load_config({"recipe": "none", "terms": {name: {"sample_rate": rate}}}).terms[name].sample_rate == rate
    with pytest.raises(InvalidConfig, match="expected a whole number of Hz, got 16000.0"):
        TERMS[name][1](sample_rate=16000.0)


def test_config_problems_are_all_reported():
    with pytest.raises(InvalidConfig) as info:
        STOIConfig(sample_rate=-5, dyn_range=float("inf"), beta=200.0)
    assert [p for p, _ in info.value.problems] == ["sample_rate", "dyn_range", "beta"]
    assert ESTOIConfig(sample_rate=44_100).sample_rate == 44_100


def test_loads_from_a_config_file(tmp_path):
    path = tmp_path / "loss.toml"
    path.write_text('recipe = "none"\n[terms.stoi]\nweight = 0.5\nsample_rate = 48000\n[terms.estoi]\n')
    config = load_config(path)
    assert config.terms["stoi"].sample_rate == 48_000 and isinstance(config.terms["estoi"], ESTOIConfig)


def test_in_a_combined_loss_from_a_config(alsa_speech):
    """Both terms from one config file in CombinedLoss: their outputs, weights and a gradient at recon."""
    from distill_core import CombinedLoss

    config = load_config({"recipe": "none", "terms": {"stoi": {"weight": 2.0}, "estoi": {"weight": 0.5}}})
    loss = CombinedLoss(config)
    clean = torch.from_numpy(alsa_speech[0]).float()[None, None]
    recon = torch.from_numpy(degraded(alsa_speech[0], 0.0)).float()[None, None].requires_grad_(True)
    out = loss({"recon": recon, "target": clean})
    values = {k: float(v.detach()) for k, v in out.items()}
    ref = {name: 1 - reference_score(name, alsa_speech[0], degraded(alsa_speech[0], 0.0), 16_000) for name in TERMS}
    assert values["stoi_loss"] == pytest.approx(ref["stoi"], abs=1e-5)
    assert values["estoi_loss"] == pytest.approx(ref["estoi"], abs=1e-5)
    assert values["total_loss"] == pytest.approx(2.0 * ref["stoi"] + 0.5 * ref["estoi"], abs=1e-4)
    out["total_loss"].backward()
    assert torch.isfinite(recon.grad).all() and recon.grad.abs().sum() > 0
