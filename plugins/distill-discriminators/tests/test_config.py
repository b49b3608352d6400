"""Configs name what a user wrote when it is wrong; presets give the anchors' setups; discovery finds the plugin;
the loss forms have the values their definitions give."""

from __future__ import annotations

import pytest
import torch
from distill_discriminators import (
    PRESETS,
    AdversarialConfig,
    AdversarialLoss,
    MPDConfig,
    MRDConfig,
    MSDConfig,
    SubOutput,
    discriminator_loss,
    discriminators,
    feature_matching,
    generator_loss,
)

from distill_core import InvalidConfig, load_config
from distill_core.config.converter import structure_checked
from distill_core.testing import check_discovery


def test_discovery_finds_the_term_and_the_four_discriminators():
    check_discovery(AdversarialLoss, "distill-discriminators")
    assert {"mpd", "msd", "mrd", "msstftd"} <= set(discriminators().classes)


@pytest.mark.parametrize(
    "cls, options, path",
    [
        (MPDConfig, {"periods": (2, 0)}, "periods[1]"),
        (MPDConfig, {"width": 0.0}, "width"),
        (MSDConfig, {"width": 0.1}, "width"),
        (MRDConfig, {"bands": ((0.5, 0.2),)}, "bands[0]"),
        (MRDConfig, {"fft_sizes": (16,), "bands": ((0.0, 0.05), (0.05, 1.0))}, "bands[0]"),
        (MRDConfig, {"hop_factor": 0.5}, "hop_factor"),
    ],
)
def test_discriminator_config_errors_name_the_field(cls, options, path):
    with pytest.raises(InvalidConfig) as e:
        cls(**options)
    assert path in [p for p, _ in e.value.problems], e.value.problems


def test_a_config_file_error_names_its_path(tmp_path):
    f = tmp_path / "loss.toml"
    f.write_text(
        'recipe = "none"\n[terms.adversarial]\npreset = "dac"\n[[terms.adversarial.discriminators]]\nkind = "mdp"\n'
    )
    with pytest.raises(Exception) as e:
        load_config(f)
    assert "terms.adversarial.discriminators[0].kind: unknown discriminator kind 'mdp'" in str(e.value)
    assert "installed: cqtd, mpd, mrd, msd, msstftd" in str(e.value)
    _, problems = structure_checked(
        {"discriminators": [{"kind": "mpd", "options": {"periods": [1, -3]}}]}, AdversarialConfig, "terms.adversarial"
    )
    assert [p for p, _ in problems] == ["terms.adversarial.discriminators[0].options.periods[1]"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_one_line_gives_the_anchors_setup(tmp_path, preset):
    f = tmp_path / "loss.toml"
    f.write_text(f'recipe = "none"\n[terms.adversarial]\npreset = "{preset}"\n')
    config = load_config(f).terms["adversarial"]
    expected = {
        "dac": ("lsgan", 1.0, 2.0, 10.0),
        "hifigan_v1": ("lsgan", 1.0, 2.0, 0.0),
        "bigvgan_v2": ("lsgan", 1.0, 2.0, 500.0),
        "encodec": ("hinge", 4.0, 4.0, 0.0),
        "vocos": ("hinge_clamped", 1.0, 1.0, 0.0),
    }[preset]
    assert (config.loss, config.gen_weight, config.feat_weight, config.grad_clip) == expected
    kinds = [d.kind for d in config.discriminators]
    assert (
        kinds
        == {
            "dac": ["mpd", "mrd"],
            "hifigan_v1": ["mpd", "msd"],
            "bigvgan_v2": ["mpd", "cqtd"],
            "encodec": ["msstftd"],
            "vocos": ["mpd", "mrd"],
        }[preset]
    )


def test_an_override_keeps_the_rest_of_the_preset():
    config = AdversarialConfig(preset="encodec", loss="lsgan", optimizer={"lr": 1e-3})
    assert config.loss == "lsgan" and config.optimizer.lr == 1e-3 and config.feat_weight == 4.0
    assert config.discriminators[0].options["filters"] == 32


def test_loss_forms_have_their_definitions_values():
    fake = [SubOutput([torch.tensor([1.0, 3.0])], torch.tensor([0.5, -2.0]))]
    real = [SubOutput([torch.tensor([2.0, 2.0])], torch.tensor([2.0, 0.0]))]
    assert generator_loss("lsgan", fake).item() == pytest.approx((0.25 + 9.0) / 2)
    assert generator_loss("hinge", fake).item() == pytest.approx(0.75)
    assert generator_loss("hinge_clamped", fake).item() == pytest.approx((0.5 + 3.0) / 2)
    assert discriminator_loss("lsgan", real, fake).item() == pytest.approx((1.0 + 1.0) / 2 + (0.25 + 4.0) / 2)
    assert discriminator_loss("hinge", real, fake).item() == pytest.approx((0.0 + 1.0) / 2 + (1.5 + 0.0) / 2)
    assert feature_matching(real, fake).item() == pytest.approx(1.0)
    assert feature_matching(real, fake, include_logits=True).item() == pytest.approx(1.0 + 1.75)
    assert feature_matching(real, fake, include_logits=True, layers="mean").item() == pytest.approx(2.75 / 2)
    two = fake * 2
    assert generator_loss("hinge", two, "mean").item() == pytest.approx(0.75)
    assert generator_loss("hinge", two, "sum").item() == pytest.approx(1.5)


def test_a_presets_discriminators_are_defaults_overridden_field_by_field():
    """Issue 31.5: ``{kind = "mpd"}`` under dac is DAC's MPD; a given option or field replaces only itself."""
    (mpd, mrd) = AdversarialConfig(preset="dac", discriminators=[{"kind": "mpd"}, {"kind": "mrd"}]).discriminators
    assert mpd.options == {"periods": [2, 3, 5, 7, 11], "always_pad": True, "normalize_input": True}
    assert mrd.options == {"fft_sizes": [2048, 1024, 512], "padding": "dac", "normalize_input": True}
    assert (mpd.weight, mpd.reduce, mpd.feat_reduce) == (1.0, "sum", "sum")
    (mpd,) = AdversarialConfig(
        preset="dac", discriminators=[{"kind": "mpd", "options": {"periods": [2, 3], "always_pad": False}}]
    ).discriminators
    assert mpd.options == {"periods": [2, 3], "always_pad": False, "normalize_input": True}
    assert mpd.build_config().always_pad is False and mpd.build_config().normalize_input is True
    # vocos: the MRD's weight 0.1, its means and options stay unless given; a given reduce = "sum" stays too
    (mpd, mrd) = AdversarialConfig(
        preset="vocos",
        discriminators=[{"kind": "mpd", "reduce": "sum"}, {"kind": "mrd", "options": {"fft_sizes": [512]}}],
    ).discriminators
    assert (mpd.reduce, mpd.feat_reduce, mpd.options["first_layer_features"]) == ("sum", "mean", False)
    assert (mrd.weight, mrd.reduce, mrd.feat_reduce) == (0.1, "mean", "mean")
    assert mrd.options == {
        "fft_sizes": [512],
        "padding": "center",
        "normalize_input": True,
        "first_layer_features": False,
    }
    # a kind the preset has not: its own defaults; no preset: the same
    (msd,) = AdversarialConfig(
        preset="dac", discriminators=[{"kind": "msd", "options": {"width": 0.125}}]
    ).discriminators
    assert (msd.options, msd.weight, msd.reduce) == ({"width": 0.125}, 1.0, "sum")


def test_options_are_checked_merged_with_the_presets():
    """Under vocos (MRD padding 'center') hop_factor 0.5 is valid, though the class's own padding 'dac' would
    refuse it; a merged set that does not fit names the option and what the preset added."""
    (mrd,) = AdversarialConfig(
        preset="vocos", discriminators=[{"kind": "mrd", "options": {"hop_factor": 0.5}}]
    ).discriminators
    assert mrd.build_config().hop_factor == 0.5 and mrd.build_config().padding == "center"
    with pytest.raises(InvalidConfig) as e:
        AdversarialConfig(preset="dac", discriminators=[{"kind": "mrd", "options": {"hop_factor": 0.5}}])
    assert e.value.problems == [
        (
            "discriminators[0].options.hop_factor",
            "padding 'dac' (match_stride) needs hop_factor 0.25, got 0.5 (with preset 'dac''s options for 'mrd': "
            "{'fft_sizes': [2048, 1024, 512], 'padding': 'dac', 'normalize_input': True})",
        )
    ]


@pytest.mark.slow
@pytest.mark.e2e
def test_check_prints_the_resolved_discriminators(tmp_path):
    """``distill-loss check`` prints each entry as it will be built: the preset's options merged with the
    file's, every field set."""
    import subprocess
    import sys

    import tomllib

    f = tmp_path / "loss.toml"
    f.write_text(
        'recipe = "none"\n[terms.adversarial]\npreset = "dac"\n'
        "[[terms.adversarial.discriminators]]\nkind = 'mpd'\noptions = {periods = [2, 3]}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", "check", str(f)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    first, _, printed = r.stdout.partition("\n")
    assert first.endswith(": valid")
    (entry,) = tomllib.loads(printed)["terms"]["adversarial"]["discriminators"]
    assert entry == {
        "kind": "mpd",
        "options": {"periods": [2, 3], "always_pad": True, "normalize_input": True},
        "weight": 1.0,
        "reduce": "sum",
        "feat_reduce": "sum",
    }
