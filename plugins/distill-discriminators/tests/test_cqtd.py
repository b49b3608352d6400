"""The ``cqtd`` kind against BigVGAN 2.4.1's own MultiScaleSubbandCQTDiscriminator (nnAudio 0.3.4's CQT2010v2,
torchaudio 2.11.1's Resample), at the CQTD block of BigVGAN's configs/bigvgan_v2_24khz_100band_256x.json and
bigvgan_v2_44khz_128band_512x.json (the same block; only ``sampling_rate`` differs): same weights, same
waveforms -> the same logits, feature maps and losses (BigVGAN's loss.py, run as its train.py runs them) to
1e-5 of the largest magnitude. Small ``filters`` except where a test says full width. Without the anchors
(`make anchors`) these skip, saying so.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from cqtd_anchors import BIGVGAN_CQTD, options, ours_name, signal_carrying, weights
from disc_anchors import anchor
from disc_weights import assert_close, load_state
from distill_discriminators import Adversarial, AdversarialConfig, discriminators
from distill_discriminators.cqtd import CQTD, ConstantQ, CQTDConfig, Upsample2x
from torch import nn

from distill_core import InvalidConfig
from distill_core.testing import check_term

RATES = (24000, 44100)


def pair(cfg: dict[str, Any], seed: int = 0) -> tuple[nn.Module, CQTD]:
    """BigVGAN's discriminator with random weights, and ours holding the same."""
    disc = anchor("bigvgan.discriminators")
    pytest.importorskip(
        "nnAudio.features", reason="nnAudio (BigVGAN's CQT) is not among the anchors: run `make anchors`"
    )
    theirs = disc.MultiScaleSubbandCQTDiscriminator(copy.deepcopy(cfg))
    signal_carrying(theirs, seed)
    ours = CQTD(CQTDConfig(**options(cfg)))
    load_state(ours, weights(theirs), ours_name)
    return theirs, ours


def waves(n: int = 4096, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(2, 1, n, generator=g), 0.3 * torch.randn(2, 1, n, generator=g)


def compare(ours: CQTD, theirs: nn.Module, real: torch.Tensor, fake: torch.Tensor, what: str) -> None:
    """Logits and every feature map of both signals, sub-discriminator by sub-discriminator."""
    with torch.no_grad():
        logits_r, logits_g, fmaps_r, fmaps_g = theirs(real, fake)
        for i, (r, g) in enumerate(zip(logits_r, logits_g)):  # else equal logits would say little
            assert (r - g).abs().max() > 0.1 * r.abs().max(), f"{what}[{i}]: the logits hardly depend on the input"
        for side, x, logits, fmaps in (("real", real, logits_r, fmaps_r), ("fake", fake, logits_g, fmaps_g)):
            got = ours(x)
            assert len(got) == len(logits), what
            for i, (sub, lg, fm) in enumerate(zip(got, logits, fmaps)):
                assert len(sub.features) == len(fm), f"{what} {side}[{i}]: {len(sub.features)} vs {len(fm)} maps"
                for j, (a, b) in enumerate(zip(sub.features, fm)):
                    assert_close(a, b, f"{what} {side}[{i}].features[{j}]")
                assert_close(sub.logits, lg, f"{what} {side}[{i}].logits")


def small(rate: int, **more: Any) -> dict[str, Any]:
    return {**BIGVGAN_CQTD, "sampling_rate": rate, "cqtd_filters": 4, **more}


@pytest.mark.parametrize("rate", RATES)
def test_cqt_and_upsampling_equal_nnaudios_and_torchaudios(rate):
    """The transforms alone, at each of the config's scales: BigVGAN's own modules (its resample and each
    sub-discriminator's cqt_transform) against ours."""
    theirs, _ = pair(small(rate))
    x, _ = waves()
    with torch.no_grad():
        up = theirs.discriminators[0].resample(x)
        assert_close(Upsample2x()(x), up, f"{rate}: 2x upsampling")
        scales = zip(*(BIGVGAN_CQTD[f"cqtd_{k}"] for k in ("hop_lengths", "n_octaves", "bins_per_octaves")))
        for i, (hop, n, b) in enumerate(scales):
            z = theirs.discriminators[i].cqt_transform(up)  # [B, bins, frames, (real, imag)]
            assert_close(ConstantQ(2 * rate, hop, n, b, 32.70)(up), z.permute(0, 3, 2, 1), f"{rate}: CQT[{i}]")


@pytest.mark.parametrize("rate", RATES)
def test_cqtd_outputs_equal_bigvgans(rate):
    theirs, ours = pair(small(rate), seed=1)
    real, fake = waves(seed=1)
    compare(ours, theirs, real, fake, f"cqtd {rate}")


def test_cqtd_options_equal_bigvgans():
    """The other options: CQT scales that downsample early (few octaves), dilations, a capped filters_scale,
    two logit channels, BigVGAN's cqtd_normalize_volume, a length no hop divides."""
    cfg = small(
        22050,
        cqtd_filters=6,
        cqtd_max_filters=6,
        cqtd_filters_scale=2,
        cqtd_dilations=[1, 3],
        cqtd_out_channels=2,
        cqtd_hop_lengths=[512, 64],
        cqtd_n_octaves=[3, 4],
        cqtd_bins_per_octaves=[12, 10],
        cqtd_normalize_volume=True,
    )
    theirs, ours = pair(cfg, seed=2)
    assert [d.cqt.factor for d in ours.discriminators] == [32, 8]
    real, fake = waves(n=3001, seed=2)
    compare(ours, theirs, 3 * real + 0.1, fake, "cqtd options")


@pytest.mark.parametrize("rate", RATES)
def test_full_width_outputs_equal_bigvgans(rate):
    """BigVGAN's configs as they are: 128 filters."""
    theirs, ours = pair({**BIGVGAN_CQTD, "sampling_rate": rate}, seed=3)
    real, fake = waves(n=2048, seed=3)
    compare(ours, theirs, real, fake, f"cqtd {rate} full width")


@pytest.mark.parametrize("rate", RATES)
def test_losses_equal_bigvgans_in_its_training_order(rate):
    """BigVGAN's train.py order: D's loss on ``mrd(y, y_g_hat.detach())``, then the generator's
    ``feature_loss`` (twice the sum, inside) and ``generator_loss`` on ``mrd(y, y_g_hat)``."""
    loss = anchor("bigvgan.loss")
    cfg = small(rate, cqtd_filters=16)
    theirs, ours_d = pair(cfg, seed=4)
    real, fake = waves(seed=4)
    config = AdversarialConfig(
        preset=None,
        discriminators=[{"kind": "cqtd", "options": options(cfg)}],
        loss="lsgan",
        feature_matching={"layers": "sum", "include_logits": False},
        gen_weight=1.0,
        feat_weight=2.0,  # BigVGAN's lambda, inside its feature_loss
        optimizer={"name": "adamw", "lr": 1e-4, "betas": [0.8, 0.99]},
    )
    ours = Adversarial(config)
    ours.discriminators[0].load_state_dict(ours_d.state_dict())
    with torch.no_grad():
        r, g, _, _ = theirs(real, fake.detach())
        d_expected = loss.discriminator_loss(r, g)[0]
        r, g, fmap_r, fmap_g = theirs(real, fake)
        fm_expected, gen_expected = loss.feature_loss(fmap_r, fmap_g), loss.generator_loss(g)[0]
        out = ours(fake, real)
        assert_close(out["gen"], gen_expected, f"{rate}: gen loss")
        assert_close(2 * out["feat"], fm_expected, f"{rate}: feature loss")
        total = ours.generator_loss(fake, real)
        assert_close(total, gen_expected + fm_expected, f"{rate}: the generator's adversarial total")
    assert_close(ours.update(fake, real)["disc_loss"], d_expected, f"{rate}: discriminator loss")  # before its step


# --- without the anchors ------------------------------------------------------------------------------------


def test_the_kind_is_built_in_and_its_defaults_are_bigvgans():
    assert discriminators().get("cqtd") is CQTD
    c = CQTDConfig()
    assert (c.hop_lengths, c.n_octaves, c.bins_per_octaves, c.filters, c.dilations) == (
        (512, 256, 256),
        (9, 9, 9),
        (24, 36, 48),
        32,
        (1, 2, 4),
    )
    d = CQTD(CQTDConfig(filters=4, sample_rate=44100))
    assert not any(".cqt." in k or "upsample" in k for k in d.state_dict()), "fixed transforms are not state"
    out = d(torch.randn(1, 2, 2048))  # two channels, judged as two signals
    assert [tuple(o.logits.shape) for o in out] == [(2, 1, 9, 27), (2, 1, 17, 41), (2, 1, 17, 54)]


@pytest.mark.parametrize(
    ("changes", "path", "says"),
    [
        ({"n_octaves": (10, 9, 9)}, "n_octaves[0]", "above the CQT's Nyquist frequency 24000"),
        ({"upsample": False, "sample_rate": 22050}, "n_octaves[0]", "Nyquist"),
        ({"hop_lengths": (384, 256, 256)}, "hop_lengths[0]", "expected a multiple of 256"),
        ({"hop_lengths": (512, 256)}, "hop_lengths", "bins_per_octaves has 3"),
        ({"in_channels": 2}, "in_channels", "judged as separate signals"),
        ({"fmin": 0.0}, "fmin", "expected a frequency > 0"),
        ({"dilations": (1, 0)}, "dilations[1]", "expected an integer >= 1"),
    ],
)
def test_options_a_cqt_cannot_run_are_refused_naming_the_field(changes, path, says):
    with pytest.raises(InvalidConfig) as e:
        CQTDConfig(**changes)
    assert any(p == path and says in r for p, r in e.value.problems), e.value.problems


def test_the_adversarial_term_passes_the_test_kit_with_cqtd():
    from distill_discriminators import AdversarialLoss

    def batch(dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        target = torch.randn(2, 1, 1024, dtype=dtype, device=device)
        return {"recon": target + 0.3 * torch.randn_like(target), "target": target}

    spec = {"kind": "cqtd", "options": {"sample_rate": 8000, "hop_lengths": [64], "n_octaves": [3]}}
    spec["options"] |= {"bins_per_octaves": [12], "filters": 4}
    torch.manual_seed(0)
    config = AdversarialConfig(
        preset=None,
        discriminators=[spec],
        loss="lsgan",
        feature_matching={"layers": "sum", "include_logits": False},
        gen_weight=1.0,
        feat_weight=2.0,
        optimizer={"name": "adamw"},
    )
    check_term(AdversarialLoss, batch, config)
