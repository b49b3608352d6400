"""distill_core.dsp.mel.mel_filterbank against librosa.filters.mel (the oracle) for every FFT size and option."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill_core.dsp.mel import mel_filterbank

librosa = pytest.importorskip("librosa", reason="librosa is the oracle for the mel filterbank")


def librosa_mel(sr, n_fft, n_mels, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa's "Empty filters detected" for narrow settings
        return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, **options)


def assert_equal_to_librosa(sr, n_fft, n_mels, **options):
    ours = mel_filterbank(sr, n_fft, n_mels, **options)
    theirs = librosa_mel(sr, n_fft, n_mels, **options)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * float(np.abs(theirs).max()))


@pytest.mark.parametrize("n_fft", [255, 101])
def test_odd_fft_sizes_regression(n_fft):
    """Odd sizes used to place bin k at k * sr / (n_fft - 1): 4.4e-4 off at 255 and 1.1e-3 at 101."""
    assert_equal_to_librosa(16000, n_fft, 32)


def test_defaults_are_librosas():
    theirs = librosa_mel(22050, 1024, 80)
    np.testing.assert_allclose(mel_filterbank(22050, 1024, 80), theirs, rtol=1e-6, atol=1e-9)
    spelled_out = mel_filterbank(22050, 1024, 80, fmin=0.0, fmax=11025.0, htk=False, norm="slaney")
    np.testing.assert_array_equal(mel_filterbank(22050, 1024, 80), spelled_out)


NORMS = st.one_of(
    st.sampled_from(["slaney", None, math.inf, -math.inf, 0, 1, 2]), st.floats(min_value=0.25, max_value=4.0)
)


@st.composite
def filterbank_settings(draw):
    sr = draw(st.sampled_from([8000, 16000, 22050, 24000, 44100, 48000])) + draw(st.integers(-50, 50))
    n_fft = draw(st.integers(16, 2049))
    nyquist = sr / 2.0
    fmin = draw(st.floats(min_value=0.0, max_value=nyquist * 0.8))
    fmax = draw(st.one_of(st.none(), st.floats(min_value=fmin + 1.0, max_value=nyquist)))
    n_mels = draw(st.integers(1, 128))
    return dict(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=draw(st.booleans()), norm=draw(NORMS))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filterbank_settings())
def test_random_settings_equal_librosa(s):
    assert_equal_to_librosa(s.pop("sr"), s.pop("n_fft"), s.pop("n_mels"), **s)


def test_unknown_norm_names_what_was_given():
    with pytest.raises(ValueError, match="norm='l2'; expected 'slaney', None, a number p >= 0"):
        mel_filterbank(16000, 512, 40, norm="l2")
    with pytest.raises(ValueError, match="norm=-1"):
        mel_filterbank(16000, 512, 40, norm=-1)
