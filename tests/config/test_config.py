"""Config loading: the recipe, round trips in every format, and errors that name what was written."""

from __future__ import annotations

import json

import pytest

from distill_core import ConfigError, LinearWarmup, LossConfig, dump_config, load_config
from distill_core.config.converter import converter


def test_seed_defaults():
    c = LossConfig()
    assert c.terms["stft"].weight == 1.0
    assert c.terms["stft"].fft_sizes == (512, 1024, 2048)
    assert c.terms["stft"].hop_sizes == (128, 256, 512)
    assert c.terms["stft"].win_lengths == (512, 1024, 2048)
    assert c.groups["reconstruction"].weight == 0.1
    assert c.groups["reconstruction"].members["mag_recon"] == 1.0
    assert c.groups["reconstruction"].members["if_recon"] == 0.5
    assert c.terms["kl"].weight_max == 0.01
    assert c.terms["kl"].warmup_fraction == 0.3
    assert c.terms["kl"].free_bits == 0.1


@pytest.mark.parametrize("suffix", [".toml", ".json", ".yaml", ".yml"])
def test_round_trip_every_format(tmp_path, suffix):
    c = LossConfig()
    c.terms["kl"].free_bits = 0.25
    c.terms["stft"].fft_sizes = (256, 512)
    c.terms["stft"].hop_sizes = (64, 128)
    c.terms["stft"].win_lengths = (256, 512)
    path = dump_config(c, tmp_path / f"loss{suffix}")
    assert load_config(path) == c
    assert converter.structure(converter.unstructure(c), LossConfig) == c


def test_file_adds_to_and_changes_the_recipe(tmp_path):
    path = tmp_path / "loss.toml"
    path.write_text(
        "[terms.stft]\nfft_sizes = [1024, 2048, 4096]\nhop_sizes = [256, 512, 1024]\n"
        "win_lengths = [1024, 2048, 4096]\n[terms.kl]\nweight = 0.5\n"
        "[groups.reconstruction]\nif_weight = 0.25\n"
    )
    c = load_config(path)
    assert c.terms["stft"].fft_sizes == (1024, 2048, 4096) and c.terms["stft"].weight == 1.0
    assert c.terms["kl"].weight == 0.5 and c.terms["kl"].free_bits == 0.1
    assert c.groups["reconstruction"].members["if_recon"] == 0.25 and c.groups["reconstruction"].weight == 0.1
    assert set(c.terms) == {"stft", "mag_recon", "if_recon", "kl"}


def test_mapping_source_like_omegaconf_container():
    c = load_config({"terms": {"kl": {"weight": {"schedule": "cyclical", "max": 0.1, "cycles": 3}}}})
    assert c.terms["kl"].weight.cycles == 3 and c.terms["kl"].weight_max == 0.1


def test_schedule_round_trip():
    c = load_config({"terms": {"kl": {"weight": {"schedule": "linear_warmup", "max": 0.2, "warmup_fraction": 0.5}}}})
    assert c.terms["kl"].weight == LinearWarmup(0.2, 0.5)
    assert converter.unstructure(c)["terms"]["kl"]["weight"] == {
        "schedule": "linear_warmup",
        "max": 0.2,
        "warmup_fraction": 0.5,
    }


MALFORMED = [
    ({"terms": {"stft": {"fft_sizes": [512, "x", 2048]}}}, "terms.stft.fft_sizes[1]: expected int, got 'x'"),
    ({"terms": {"stft": {"weight": "heavy"}}}, "terms.stft.weight: expected a number or a schedule table"),
    ({"terms": {"stft": {"fft_size": [512]}}}, "terms.stft.fft_size: unknown key; did you mean 'fft_sizes'?"),
    ({"term": {}}, "term: unknown key; did you mean 'terms'?"),
    ({"terms": {"stfft": {}}}, "terms.stfft: unknown term 'stfft'; did you mean 'stft'?"),
    (
        {"terms": {"stft": {"hop_sizes": [128, 256]}}},
        "terms.stft.hop_sizes: fft_sizes, hop_sizes and win_lengths must have equal lengths",
    ),
    (
        {"terms": {"stft": {"fft_sizes": [], "hop_sizes": [], "win_lengths": []}}},
        "terms.stft.fft_sizes: expected at least one resolution",
    ),
    ({"terms": {"stft": {"hop_sizes": [128, 2048, 512]}}}, "terms.stft.hop_sizes[1]: hop 2048 exceeds win_lengths[1]"),
    (
        {"terms": {"stft": {"win_lengths": [1024, 1024, 2048]}}},
        "terms.stft.win_lengths[0]: window 1024 exceeds fft_sizes[0]=512",
    ),
    ({"terms": {"stft": {"fft_sizes": [0, 1024, 2048]}}}, "terms.stft.fft_sizes[0]: expected a positive size, got 0"),
    ({"terms": {"mag_recon": {"weight": -1.0}}}, "terms.mag_recon.weight: expected a finite weight >= 0, got -1.0"),
    ({"terms": {"mag_recon": {"weight": float("nan")}}}, "terms.mag_recon.weight: expected a finite weight >= 0"),
    ({"terms": {"mag_recon": {"weight": float("inf")}}}, "terms.mag_recon.weight: expected a finite weight >= 0"),
    (
        {"terms": {"kl": {"weight": {"schedule": "linear_warmup", "warmup_fraction": 1.5}}}},
        "terms.kl.weight.warmup_fraction: expected 0 <= warmup_fraction <= 1, got 1.5",
    ),
    (
        {"terms": {"kl": {"weight": {"schedule": "linear_warmpu"}}}},
        "terms.kl.weight: unknown schedule 'linear_warmpu'; expected one of",
    ),
    ({"terms": {"kl": {"free_bits": True}}}, "terms.kl.free_bits: expected a number, got True"),
    ({"terms": {"stft": {"mag_distance": "L3"}}}, "terms.stft.mag_distance: expected one of 'L1', 'L2', got 'L3'"),
    ({"groups": {"reconstruction": {"weight": -0.1}}}, "groups.reconstruction.weight: expected a finite weight >= 0"),
    ({"groups": {"extra": {"members": ["mag_recon"]}}}, "term 'mag_recon' is already in group"),
    ({"groups": {"extra": {"members": ["nope"]}}}, "member 'nope' is not a configured term"),
    ({"fallback": "nowhere"}, "fallback: expected a group name (reconstruction), got 'nowhere'"),
    (
        {"recipe": "gan"},
        "recipe: expected one of 'vae', 'bigvgan_v2', 'dac', 'encodec', 'hifigan_v1', 'vocos', 'none', got 'gan'",
    ),
    ({"required_plugins": ["distill-stft>>0.1"]}, "required_plugins[0]: not a requirement"),
    ({"terms": {"stft": {"scale": "mel"}}}, "terms.stft.sample_rate: a positive sample_rate is required"),
]


@pytest.mark.parametrize("data,expected", MALFORMED, ids=[m[1][:40] for m in MALFORMED])
def test_malformed_configs_name_the_path(data, expected):
    with pytest.raises(ConfigError) as err:
        load_config(data)
    assert expected in str(err.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as err:
        load_config(
            {
                "terms": {"stft": {"fft_sizes": [512, "x", 2048], "windw": "hann_window"}, "kl": {"free_bits": "lots"}},
                "fallbak": None,
            }
        )
    paths = [p for p, _ in err.value.problems]
    assert paths == ["fallbak", "terms.stft.fft_sizes[1]", "terms.stft.windw", "terms.kl.free_bits"]


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "loss.toml"
    bad.write_text("[terms.stft\nweight = 1")
    with pytest.raises(ConfigError, match=f"(?s)in {bad}.*cannot parse as TOML"):
        load_config(bad)
    js = tmp_path / "loss.json"
    js.write_text(json.dumps({"terms": {"kl": {"free_bits": "x"}}}))
    with pytest.raises(ConfigError, match=rf"(?s)in {js}.*terms.kl.free_bits: expected a number, got 'x'"):
        load_config(js)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unsupported config file type '.ini'"):
        load_config(tmp_path / "loss.ini")


def test_yaml_python_tags_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    y = tmp_path / "loss.yaml"
    y.write_text(f"terms: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="cannot parse as YAML"):
        load_config(y)
    assert not marker.exists()


def test_non_utf8_file(tmp_path):
    p = tmp_path / "loss.toml"
    p.write_bytes(b"[terms.kl]\nfree_bits = 0.1 # \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(line 2, byte 29"):
        load_config(p)


@pytest.mark.parametrize(
    "suffix,text",
    [(".json", '{"terms": {"kl": {}}, "terms": {}}'), (".yaml", "terms:\n  kl: {}\n  kl: {free_bits: 0.2}\n")],
)
def test_duplicate_keys_are_errors(tmp_path, suffix, text):
    p = tmp_path / f"loss{suffix}"
    p.write_text(text)
    with pytest.raises(ConfigError, match="duplicate key"):
        load_config(p)


def _generated_hooks() -> int:
    import linecache

    return sum(1 for name in linecache.cache if "cattrs generated" in name)


def test_a_well_formed_table_structures_without_generated_code_and_as_the_generated_hook_does():
    """Every installed term's config: its defaults, and a table with every field given, structure to what
    cattrs's generated (detailed) hook makes, with no code generated; a table with a problem is said by it."""
    import attrs

    from distill_core import get_registry

    assert _generated_hooks() == _generated_hooks()  # the probe itself generates nothing
    for name, info in sorted(get_registry().terms.items()):
        cls = info.config_class
        data = converter.unstructure(cls())
        if "sample_rate" in data and data["sample_rate"] is None:  # a file must give it (auraloss's mel, chroma)
            data["sample_rate"] = 16000
        before = _generated_hooks()
        ours = converter.structure(dict(data), cls)
        assert _generated_hooks() == before, f"{name}: a valid table generated a structure hook"
        theirs = converter.gen_structure_attrs_fromdict(cls)(dict(data), cls)
        assert ours == theirs and converter.unstructure(ours) == data, name
    warmup = {"schedule": "linear_warmup", "max": 0.02, "warmup_fraction": 0.5}
    kl = get_registry().get("kl").config_class
    ours = converter.structure({"weight": warmup, "free_bits": 0.5}, kl)
    assert ours.weight == LinearWarmup(max=0.02, warmup_fraction=0.5) and ours.free_bits == 0.5

    @attrs.define
    class Fresh:
        steps: tuple[int, ...] = (1,)

    assert converter.structure({"steps": [2, 3]}, Fresh) == Fresh((2, 3))
    with pytest.raises(Exception) as err:
        converter.structure({"steps": [2, "x"], "extra": 1}, Fresh)
    from distill_core.config.converter import problems_from

    assert problems_from(err.value, "fresh") == [
        ("fresh.steps[1]", "expected int, got 'x'"),
        ("fresh.extra", "unknown key (valid keys: steps)"),
    ]
