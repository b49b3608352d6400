"""The adversarial term's batch is checked before any compute: each wrong batch is one BatchError naming the
batch key, the shape and what was expected; float64 works (cast to D's dtype, or D in float64)."""

from __future__ import annotations

import pytest
import torch
from distill_discriminators import Adversarial, AdversarialConfig, AdversarialLoss
from distill_discriminators.adversarial import check_pair

from distill_core.terms.base import BatchError

SMALL = [
    {"kind": "mpd", "options": {"periods": [2, 3]}},
    {"kind": "mrd", "options": {"fft_sizes": [128, 64]}},
]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: the machine's two cores are shared with the other tests' workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def term(discriminators=SMALL, preset="dac"):
    return AdversarialLoss(AdversarialConfig(preset=preset, discriminators=discriminators, width=1 / 16))


def waves(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


class NoCompute:
    """Counts discriminator forwards: a batch check must refuse before any."""

    def __init__(self, adv: Adversarial) -> None:
        self.calls = 0
        for d in adv.discriminators:
            d.register_forward_pre_hook(self.hook)

    def hook(self, module, args):
        self.calls += 1


def refused(loss, batch):
    """The BatchError of the term's generator pass and of its D step (the same), with no D forward run."""
    seen = NoCompute(loss.adversarial)
    messages = []
    for call in (loss, loss.update):
        with pytest.raises(BatchError) as e:
            call(batch)
        messages.append(str(e.value))
    assert seen.calls == 0 and int(loss.adversarial.updates) == 0
    assert messages[0] == messages[1] and "\n" not in messages[0]
    return messages[0]


@pytest.mark.parametrize(
    "recon, target, expected",
    [
        (
            (2, 1, 1000),
            (2, 1, 999),
            "adversarial: batch['recon'] has shape [2, 1, 1000] but batch['target'] has [2, 1, 999]; "
            "expected equal shapes [B, C, N]",
        ),
        (
            (2, 2, 1000),
            (2, 1, 1000),
            "adversarial: batch['recon'] has shape [2, 2, 1000] but batch['target'] has [2, 1, 1000]; "
            "expected equal shapes [B, C, N]",
        ),
        (
            (2, 1, 80, 32),
            (2, 1, 80, 32),
            "adversarial: batch['recon'] expected shape [B, C, N] (3-D), got [2, 1, 80, 32] (4-D)",
        ),
        ((0, 1, 1000), (0, 1, 1000), "adversarial: batch['recon'] is empty: shape [0, 1, 1000], expected [B, C, N]"),
    ],
)
def test_a_batch_that_is_not_a_pair_of_waveforms_is_one_batch_error_naming_the_keys(recon, target, expected):
    assert refused(term(), {"recon": waves(*recon), "target": waves(*target, seed=1)}) == expected


def test_a_waveform_shorter_than_a_discriminator_needs_names_it_and_the_bound():
    """MRD's fft 128 under padding 'dac' needs 73 samples (its reflect pads), MPD's period 3 three."""
    loss = term()
    message = refused(loss, {"recon": waves(2, 1, 72), "target": waves(2, 1, 72)})
    assert message == (
        "adversarial: batch['recon'] has shape [2, 1, 72]: 72 samples per signal; expected waveforms [B, C, N] "
        "with N >= 73 for discriminators[1] (mrd: fft_sizes[0]=128 reflect-pads with padding 'dac')"
    )
    loss.update({"recon": waves(2, 1, 73), "target": waves(2, 1, 73, seed=1)})  # the bound itself trains
    assert int(loss.adversarial.updates) == 1


@pytest.mark.parametrize(
    "discriminators, shortest",
    [
        ([{"kind": "mpd", "options": {"periods": [2, 7], "always_pad": False}}], 7),
        ([{"kind": "mpd", "options": {"periods": [7, 2], "always_pad": True}}], 8),
        ([{"kind": "mrd", "options": {"fft_sizes": [64], "padding": "center"}}], 33),
        ([{"kind": "mrd", "options": {"fft_sizes": [256, 64], "padding": "dac"}}], 145),
        ([{"kind": "msstftd", "options": {"n_ffts": [64], "hop_lengths": [16], "win_lengths": [48]}}], 64),
        ([{"kind": "msd", "options": {"scales": 2, "width": 0.125}}], 1),
    ],
)
def test_each_kinds_bound_is_where_it_stops_running(discriminators, shortest):
    """At the bound the discriminators run; one sample less is refused by us, and (where the bound is torch's)
    the discriminators alone would fail there."""
    loss = term(discriminators, preset="hifigan_v1" if discriminators[0]["kind"] == "msd" else "dac")
    adv = loss.adversarial
    assert max(d.min_samples()[0] for d in adv.discriminators) == shortest
    with torch.no_grad():
        adv.judge(waves(1, 1, shortest))
        if shortest > 1:
            with pytest.raises(BatchError, match=f"N >= {shortest} for discriminators"):
                loss({"recon": waves(1, 1, shortest - 1), "target": waves(1, 1, shortest - 1)})
            kind = discriminators[0]["kind"]
            if kind != "mpd" or discriminators[0]["options"]["always_pad"]:  # MPD folds fewer samples than a period
                with pytest.raises((RuntimeError, ValueError)):
                    adv.judge(waves(1, 1, shortest - 1))


def test_a_mel_spectrogram_given_as_a_waveform_is_refused_before_any_compute():
    """Issue 31.6: [B, 80, T] where [B, C, N] is read, with an MPD-only list (which would have run) and with
    the dac preset (which died in torch's padding)."""
    mel = {"recon": waves(4, 80, 32).abs(), "target": waves(4, 80, 32, seed=1).abs()}
    mpd_only = refused(term([{"kind": "mpd"}]), mel)
    assert mpd_only == (
        "adversarial: batch['recon'] has shape [4, 80, 32]: 80 channels of 32 samples; expected waveforms "
        "[B, C, N] with more samples than channels, N >= 12 for discriminators[0] (mpd: periods[4]=11 with "
        "always_pad reflect-pads up to 11 samples); a spectrogram [B, F, T] is not a waveform"
    )
    dac = refused(AdversarialLoss(AdversarialConfig(preset="dac", width=1 / 16)), mel)
    assert dac == (
        "adversarial: batch['recon'] has shape [4, 80, 32]: 80 channels of 32 samples; expected waveforms "
        "[B, C, N] with more samples than channels, N >= 1153 for discriminators[1] (mrd: fft_sizes[0]=2048 "
        "reflect-pads with padding 'dac'); a spectrogram [B, F, T] is not a waveform"
    )
    long_mel = {"recon": waves(2, 80, 400), "target": waves(2, 80, 400, seed=1)}  # more frames than bins
    assert "N >= 1153" in refused(AdversarialLoss(AdversarialConfig(preset="dac", width=1 / 16)), long_mel)


def test_integer_input_is_refused_and_float64_input_trains_a_float32_d():
    loss = term()
    ints = {"recon": torch.ones(2, 1, 512, dtype=torch.int64), "target": torch.ones(2, 1, 512, dtype=torch.int64)}
    assert refused(loss, ints) == "adversarial: batch['recon'] expected a floating dtype, got torch.int64"
    recon = waves(2, 1, 512, dtype=torch.float64).requires_grad_(True)
    batch = {"recon": recon, "target": waves(2, 1, 512, seed=1, dtype=torch.float64)}
    figures = loss.update(batch)
    out = loss(batch)
    assert int(loss.adversarial.updates) == 1 and torch.isfinite(figures["disc_loss"])
    assert {v.dtype for v in out.values()} == {torch.float32}  # D's dtype
    (out["gen"] + out["feat"]).backward()
    assert recon.grad is not None and recon.grad.dtype == torch.float64 and torch.isfinite(recon.grad).all()


def test_a_float64_d_reads_float64_and_float32_input_in_float64():
    torch.manual_seed(0)
    loss = term().double()
    recon32 = waves(2, 1, 512)
    batch32 = {"recon": recon32, "target": waves(2, 1, 512, seed=1)}
    batch64 = {k: v.double() for k, v in batch32.items()}
    out32, out64 = loss(batch32), loss(batch64)
    assert out64["gen"].dtype == torch.float64 and torch.equal(out32["gen"], out64["gen"])
    assert loss.update(batch64)["disc_loss"].dtype == torch.float64


def test_the_plain_adversarial_names_fake_and_real():
    adv = Adversarial(AdversarialConfig(preset="dac", discriminators=SMALL, width=1 / 16))
    with pytest.raises(BatchError) as e:
        adv.update(waves(2, 1, 500), waves(2, 1, 400))
    assert str(e.value) == (
        "adversarial: batch['fake'] has shape [2, 1, 500] but batch['real'] has [2, 1, 400]; "
        "expected equal shapes [B, C, N]"
    )
    x, y = check_pair(adv, waves(1, 1, 100, dtype=torch.float64), waves(1, 1, 100, dtype=torch.float64))
    assert x.dtype == y.dtype == torch.float32
