"""hifigan_mel and vocos_mel on their own: value and gradient against the anchors' mel code (bigvgan 2.4.1's
meldataset.mel_spectrogram, HiFi-GAN's; vocos 0.1.0's MelSpecReconstructionLoss over torchaudio's Python), the
test kit's conformance check, refused configs and batches, discovery; and the recipes' data."""

from __future__ import annotations

import pytest
import torch
from disc_anchors import anchor
from disc_weights import assert_close
from distill_recipes import HifiganMelConfig, HifiganMelLoss, VocosMelConfig, VocosMelLoss

from distill_core import BatchError, ConfigError, load_config
from distill_core.registry import recipes
from distill_core.testing import check_term

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning")]  # torchaudio's empty-filter warning


def waves(n: int, b: int = 2, c: int = 1, seed: int = 0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.tanh(0.5 * torch.randn(b, c, n, generator=g, dtype=torch.float64)).to(dtype)
    y = torch.tanh(0.5 * torch.randn(b, c, n, generator=g, dtype=torch.float64)).to(dtype)
    return x.requires_grad_(True), y


@pytest.mark.parametrize(
    "options",
    [{}, {"sampling_rate": 24000, "n_fft": 1024, "num_mels": 100, "hop_size": 256, "win_size": 1024, "fmax": 12000.0}],
    ids=["config_v1", "bigvgan 24 kHz"],
)
def test_hifigan_mel_equals_hifigans_mel_spectrogram_l1(options):
    """train.py line 145 without its x45: F.l1_loss(y_mel, y_g_hat_mel) of meldataset.mel_spectrogram."""
    mel_spectrogram = anchor("bigvgan.meldataset").mel_spectrogram
    config = HifiganMelConfig(**options)
    x, y = waves(5000)
    h = dict(
        n_fft=config.n_fft,
        num_mels=config.num_mels,
        sampling_rate=config.sampling_rate,
        hop_size=config.hop_size,
        win_size=config.win_size,
        fmin=config.fmin,
        fmax=config.fmax,
    )
    expected = torch.nn.functional.l1_loss(mel_spectrogram(y.squeeze(1), **h), mel_spectrogram(x.squeeze(1), **h))
    (expected_grad,) = torch.autograd.grad(expected, x)
    got = HifiganMelLoss(config)({"recon": x, "target": y})
    (grad,) = torch.autograd.grad(got, x)
    assert_close(got, expected, "hifigan_mel")
    assert_close(grad, expected_grad, "hifigan_mel gradient")


def test_vocos_mel_equals_vocos_mel_spec_reconstruction_loss():
    loss = anchor("vocos.loss").MelSpecReconstructionLoss(sample_rate=24000)
    x, y = waves(6000, seed=1)
    expected = loss(x.squeeze(1), y.squeeze(1))
    (expected_grad,) = torch.autograd.grad(expected, x)
    got = VocosMelLoss(VocosMelConfig())({"recon": x, "target": y})
    (grad,) = torch.autograd.grad(got, x)
    assert_close(got, expected, "vocos_mel")
    assert_close(grad, expected_grad, "vocos_mel gradient")


@pytest.mark.parametrize(
    "cls, config",
    [
        (HifiganMelLoss, HifiganMelConfig(n_fft=256, num_mels=20, hop_size=64, win_size=200)),
        (VocosMelLoss, VocosMelConfig(n_fft=256, hop_length=64, n_mels=24)),
    ],
    ids=["hifigan_mel", "vocos_mel"],
)
def test_the_test_kits_contract(cls, config):
    def batch(dtype, device):
        x, y = waves(400, b=2, c=2, dtype=dtype)
        return {"recon": x.detach().to(device).requires_grad_(True), "target": y.to(device)}

    check_term(cls, batch, config)


def test_channels_are_rows():
    x, y = waves(3000, c=2, seed=2)
    term = VocosMelLoss(VocosMelConfig())
    both = term({"recon": x, "target": y})
    each = [term({"recon": x[:, i : i + 1], "target": y[:, i : i + 1]}) for i in range(2)]
    assert_close(both, torch.stack(each).mean(), "two channels as the mean of each")


@pytest.mark.parametrize(
    "section, message",
    [
        ({"term": "hifigan_mel", "win_size": 2048}, "terms.mel.win_size: expected at most n_fft=1024, got 2048"),
        (
            {"term": "hifigan_mel", "fmax": 20000.0},
            "terms.mel.fmax: expected 0 <= fmin=0.0 < fmax=20000.0 <= sampling_rate / 2 = 11025.0",
        ),
        (
            {"term": "hifigan_mel", "n_fft": 0},
            "terms.mel.n_fft: expected a whole number from 1 to 1048576 (2^20), got 0",
        ),
        (
            {"term": "vocos_mel", "n_mels": 600},
            "terms.mel.n_mels: expected at most n_fft // 2 + 1 = 513 mel bands (the FFT's bins), got 600",
        ),
        ({"term": "vocos_mel", "hop_length": 4096}, "terms.mel.hop_length: expected at most n_fft=1024, got 4096"),
    ],
)
def test_bad_options_name_their_key(section, message):
    with pytest.raises(ConfigError) as info:
        load_config({"recipe": "none", "terms": {"mel": section}})
    assert message in str(info.value)


def test_a_short_or_differentiable_target_is_refused():
    term = HifiganMelLoss(HifiganMelConfig())
    x, y = waves(384)
    with pytest.raises(
        BatchError,
        match=r"hifigan_mel: batch\['recon'\] has 384 samples; the reflect padding of 384 needs more than 384",
    ):
        term({"recon": x, "target": y})
    x, y = waves(2000)
    with pytest.raises(BatchError, match=r"batch\['target'\] requires grad.*pass target.detach\(\)"):
        term({"recon": x, "target": y.requires_grad_(True)})


@pytest.mark.parametrize("name", ["dac", "hifigan_v1", "bigvgan_v2", "encodec", "vocos"])
def test_each_recipe_is_installed_and_names_its_distributions(name):
    recipe = recipes.get(name)
    assert set(recipe.distributions) == set(recipe.terms)
    config = load_config({"recipe": name})
    assert list(config.terms) == list(recipe.terms)
    assert set(config.batch) >= {"recon", "target"}


def test_a_missing_term_distribution_is_named(monkeypatch):
    """The recipe's ``distributions`` name what to install for a term that is not there (here: every plugin but
    distill-discriminators left out through the allow-list)."""
    from distill_core.registry.discovery import Registry

    monkeypatch.setenv("DISTILL_PLUGINS", "distill-discriminators")
    with pytest.raises(ConfigError) as info:
        load_config({"recipe": "hifigan_v1"}, registry=Registry())
    assert (
        "terms.hifigan_mel: unknown term 'hifigan_mel'; it is provided by the distribution 'distill-recipes' "
        "(pip install distill-recipes)"
    ) in str(info.value)
