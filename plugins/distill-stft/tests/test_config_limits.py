"""Config-time limits: sizes up to 2^20, bounded filterbanks and no empty mel filter, all before any build."""

from __future__ import annotations

import random

import pytest
from distill_stft import STFTConfig, empty_mel_filters
from distill_stft.config import MAX_SIZE

from distill_core import ConfigError, InvalidConfig, load_config
from distill_core.loss.schema import term_schema

SMALL = dict(fft_sizes=(64, 128, 256), hop_sizes=(16, 32, 64), win_lengths=(48, 128, 200))


@pytest.mark.parametrize("key", ["fft_sizes", "hop_sizes", "win_lengths"])
@pytest.mark.parametrize("size", [2**40, 10**30, MAX_SIZE + 1])
def test_huge_sizes_are_config_errors_with_the_path(key, size):
    section = {"fft_sizes": [512, 1024, 2048], "hop_sizes": [128, 256, 512], "win_lengths": [512, 1024, 2048]}
    section[key] = [size] + section[key][1:]
    with pytest.raises(ConfigError) as err:
        load_config({"recipe": "none", "terms": {"stft": section}})
    assert f"terms.stft.{key}[0]: expected a size <= 1048576 (2^20), got {size}" in str(err.value)


def test_the_largest_size_is_valid_and_the_schema_says_the_bound():
    assert STFTConfig(fft_sizes=(MAX_SIZE,), hop_sizes=(MAX_SIZE,), win_lengths=(MAX_SIZE,))
    schema = term_schema("stft")
    assert "2^20" in schema["description"]
    assert STFTConfig.__attrs_attrs__.fft_sizes.metadata["schema"]["items"]["maximum"] == MAX_SIZE


def test_empty_mel_filters_are_an_invalid_config_at_n_bins():
    with pytest.raises(InvalidConfig) as err:
        STFTConfig(**SMALL, scale="mel", sample_rate=16000, n_bins=32)
    assert err.value.problems == [
        (
            "n_bins",
            "n_bins 32 at sample_rate 16000 leaves 4 empty mel filters for "
            "fft_sizes[0]=64 (their log magnitude would be -inf); expected "
            "fewer n_bins or larger fft_sizes",
        )
    ]
    with pytest.raises(ConfigError, match=r"terms\.stft\.n_bins: n_bins 32 at sample_rate 16000 leaves 4 empty"):
        load_config(
            {
                "recipe": "none",
                "terms": {
                    "stft": {
                        **{k: list(v) for k, v in SMALL.items()},
                        "scale": "mel",
                        "sample_rate": 16000,
                        "n_bins": 32,
                    }
                },
            }
        )


def test_mel_filterbank_size_is_bounded_before_anything_is_built():
    with pytest.raises(
        InvalidConfig,
        match=r"n_bins 1024 with fft_sizes\[0\]=1048576 asks for a 1024 x 524289 "
        r"mel filterbank; expected n_bins \* \(fft // 2 \+ 1\) <= 67108864",
    ):
        STFTConfig(
            fft_sizes=(MAX_SIZE,),
            hop_sizes=(4096,),
            win_lengths=(MAX_SIZE,),
            scale="mel",
            sample_rate=44100,
            n_bins=1024,
        )


@pytest.mark.filterwarnings("ignore:Empty filters detected")
def test_empty_filter_count_equals_librosa():
    librosa = pytest.importorskip("librosa")
    rng = random.Random(0)
    cases = [(16000, 64, 32), (16000, 255, 32), (22050, 101, 40), (8000, 33, 33), (44100, 4096, 128)]
    cases += [
        (rng.choice([8000, 16000, 22050, 44100, rng.randint(1000, 96000)]), n, rng.randint(1, min(n, 200)))
        for n in (rng.randint(8, 2048) for _ in range(60))
    ]
    counts = []
    for sr, n_fft, n_mels in cases:
        fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
        counts.append(empty_mel_filters(sr, n_fft, n_mels))
        assert counts[-1] == int((fb.sum(axis=1) == 0).sum()), (sr, n_fft, n_mels)
    assert sum(c > 0 for c in counts) >= 10 and counts.count(0) >= 10  # both outcomes are exercised
