"""Sizes no discriminator can mean are refused when the config loads, each with its bound in the message; what
the config accepts builds, and runs on a signal as long as the discriminator says it needs."""

from __future__ import annotations

import pytest
import torch
from distill_discriminators import AdversarialConfig
from distill_discriminators.base import MAX_KERNEL, MAX_PARAMETERS, MAX_SAMPLES, MAX_WIDTH
from distill_discriminators.mpd import MPD, MPDConfig
from distill_discriminators.mrd import MAX_BANDS, MRD, MRDConfig
from distill_discriminators.msd import MAX_SCALES, MSD, MSDConfig
from distill_discriminators.msstftd import MAX_DILATIONS, MAX_FILTERS, MAX_FILTERS_SCALE, MSSTFTD, MSSTFTDConfig

from distill_core import InvalidConfig, load_config


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: the machine's two cores are shared with the other tests' workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


THIN = 1 / 32  # channels as few as they go, so a size at its bound builds small
STFT = {"n_ffts": [64], "hop_lengths": [16], "win_lengths": [64]}
BANDS = tuple((i / MAX_BANDS, (i + 1) / MAX_BANDS) for i in range(MAX_BANDS))

# kind, config class, the option at its bound (accepted), the same option past it, the path, the bound's text
CASES = [
    (MPD, MPDConfig, {"periods": (MAX_SAMPLES,)}, {"periods": (2, MAX_SAMPLES + 1)}, "periods[1]", "65536"),
    (MPD, MPDConfig, {"kernel_size": MAX_KERNEL - 1}, {"kernel_size": MAX_KERNEL + 1}, "kernel_size", "1024"),
    (MPD, MPDConfig, {"stride": MAX_KERNEL}, {"stride": MAX_KERNEL + 1}, "stride", "1024"),
    (MPD, MPDConfig, {"width": MAX_WIDTH}, {"width": 1e6}, "width", "16"),
    (MSD, MSDConfig, {"scales": MAX_SCALES, "width": 1 / 8}, {"scales": MAX_SCALES + 1}, "scales", "16"),
    (MRD, MRDConfig, {"fft_sizes": (MAX_SAMPLES,)}, {"fft_sizes": (2**30,)}, "fft_sizes[0]", "65536"),
    (MRD, MRDConfig, {"bands": BANDS}, {"bands": ((0.0, 0.5),) * (MAX_BANDS + 1)}, "bands", "64"),
    (
        MRD,
        MRDConfig,
        {"fft_sizes": (4,), "bands": ((0.0, 1.0),)},
        {"fft_sizes": (2,), "bands": ((0.0, 1.0),)},
        "fft_sizes[0]",
        "a hop of at least 1",
    ),
    (MSSTFTD, MSSTFTDConfig, {**STFT, "filters": MAX_FILTERS}, {"filters": MAX_FILTERS + 1}, "filters", "16384"),
    (MSSTFTD, MSSTFTDConfig, {"max_filters": MAX_FILTERS}, {"max_filters": 10**9}, "max_filters", "16384"),
    (
        MSSTFTD,
        MSSTFTDConfig,
        {**STFT, "filters_scale": MAX_FILTERS_SCALE},
        {"filters_scale": 17},
        "filters_scale",
        "16",
    ),
    (
        MSSTFTD,
        MSSTFTDConfig,
        {"n_ffts": [MAX_SAMPLES], "hop_lengths": [MAX_SAMPLES], "win_lengths": [MAX_SAMPLES]},
        {"n_ffts": [2**30], "hop_lengths": [256], "win_lengths": [1024]},
        "n_ffts[0]",
        "65536",
    ),
    (MSSTFTD, MSSTFTDConfig, {**STFT, "kernel_size": (3, 1023)}, {"kernel_size": (3, 1025)}, "kernel_size[1]", "1024"),
    (MSSTFTD, MSSTFTDConfig, {**STFT, "stride": (1, MAX_KERNEL)}, {"stride": (1, 2000)}, "stride[1]", "1024"),
    (
        MSSTFTD,
        MSSTFTDConfig,
        {**STFT, "dilations": (1,) * MAX_DILATIONS},
        {"dilations": (1,) * (MAX_DILATIONS + 1)},
        "dilations",
        "16",
    ),
]


@pytest.mark.parametrize("cls, config_class, at_bound, past, path, bound", CASES)
def test_each_size_is_refused_past_its_bound_and_builds_and_runs_at_it(cls, config_class, at_bound, past, path, bound):
    with pytest.raises(InvalidConfig) as e:
        config_class(**past)
    reasons = dict(e.value.problems)
    assert path in reasons and bound in reasons[path], e.value.problems
    config = config_class(**{"width": THIN, **at_bound})
    if config.parameter_count() > MAX_PARAMETERS:  # the ensemble bound refuses it, in the spec's config below
        with pytest.raises(InvalidConfig, match="parameters"):
            AdversarialConfig(preset="dac", discriminators=[{"kind": cls.name, "options": at_bound}], width=THIN)
        return
    d = cls(config)
    assert sum(p.numel() for p in d.parameters()) == config.parameter_count()
    n = d.min_samples()[0]
    if n <= MAX_SAMPLES and config.parameter_count() < 5e6:  # the big kernels would take seconds on one core
        with torch.no_grad():
            out = d(torch.randn(1, 1, n))
        assert all(torch.isfinite(o.logits).all() for o in out)


def test_the_shared_width_has_its_bound_and_the_ensemble_a_parameter_bound(tmp_path):
    with pytest.raises(InvalidConfig) as e:
        AdversarialConfig(preset="dac", width=1e6)
    assert dict(e.value.problems)["width"] == (
        "expected a channel multiplier of at most 16 (x the anchors' channels), got 1000000.0"
    )
    with pytest.raises(InvalidConfig) as e:
        AdversarialConfig(preset="dac", width=8)
    reason = dict(e.value.problems)["discriminators"]
    assert reason == (
        "would hold 2,717,066,768 parameters at width 8 ([0] mpd 2,628,340,490, [1] mrd 88,726,278; 10.1 GiB in "
        "float32); expected at most 536,870,912: fewer or narrower discriminators (width, channels)"
    )
    config = AdversarialConfig(preset="dac", width=3)  # 9x DAC's 42.5M: under the bound, and it builds
    assert sum(s.build_config(3).parameter_count() for s in config.discriminators) < MAX_PARAMETERS
    f = tmp_path / "loss.toml"
    f.write_text('recipe = "none"\n[terms.adversarial]\npreset = "dac"\nwidth = 1e6\n')
    with pytest.raises(Exception, match=r"terms\.adversarial\.width: expected a channel multiplier of at most 16"):
        load_config(f)
    f.write_text(
        'recipe = "none"\n[terms.adversarial]\npreset = "dac"\n'
        "[[terms.adversarial.discriminators]]\nkind = 'mrd'\noptions = {fft_sizes = [1073741824]}\n"
    )
    with pytest.raises(Exception) as e:
        load_config(f)
    assert "terms.adversarial.discriminators[0].options.fft_sizes[0]: expected at most 65536, got 1073741824" in str(
        e.value
    )


@pytest.mark.parametrize(
    "cls, config",
    [
        (MPD, MPDConfig(periods=(2, 3, 5), width=0.3, norm="spectral", kernel_size=7)),
        (MSD, MSDConfig(scales=2, width=0.25, spectral_first=False)),
        (MRD, MRDConfig(fft_sizes=(256, 64), width=0.5, bands=((0.0, 0.5), (0.5, 1.0)))),
        (MSSTFTD, MSSTFTDConfig(filters=4, filters_scale=2, dilations=(1, 2, 4, 8), kernel_size=(5, 7), **STFT)),
    ],
)
def test_the_counted_parameters_are_the_builds(cls, config):
    """``parameter_count`` (what the bound reads before anything is built) is the built module's count; and
    MS-STFTD with filters_scale > 1, which audiocraft cannot run, runs."""
    d = cls(config)
    assert sum(p.numel() for p in d.parameters()) == config.parameter_count()
    with torch.no_grad():
        d(torch.randn(1, 1, max(d.min_samples()[0], 64)))
