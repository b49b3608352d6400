"""A catalogue of bad inputs: each case asserts the exception type and that the message names the offender."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from distill_core import BatchError, CombinedLoss, ConfigError, LossConfig, load_config

LOSS = None


def recipe():
    global LOSS
    if LOSS is None:
        LOSS = CombinedLoss(LossConfig())
    return LOSS


def batch(**override):
    g = torch.Generator().manual_seed(0)
    b = {"recon": torch.rand(2, 2, 32, 80, generator=g), "target": torch.rand(2, 2, 32, 80, generator=g),
         "mu": torch.randn(2, 8, generator=g), "logvar": torch.randn(2, 8, generator=g)}
    b.update(override)
    return {k: v for k, v in b.items() if v is not None}


R = torch.rand
TENSOR_CASES = [
    ("recon rank 3", dict(recon=R(2, 32, 80)), "batch['recon'] expected shape [B, 2, F, T] (4-D), got [2, 32, 80]"),
    ("recon rank 5", dict(recon=R(2, 2, 32, 80, 1)), "batch['recon'] expected shape [B, 2, F, T] (4-D), got [2, 2, 32, 80, 1]"),
    ("target rank 2", dict(target=R(2, 2560)), "batch['target'] expected shape [B, 2, F, T] (4-D), got [2, 2560]"),
    ("recon 1 channel", dict(recon=R(2, 1, 32, 80)), "with 2 channels in dim 1, got [2, 1, 32, 80]"),
    ("recon 3 channels", dict(recon=R(2, 3, 32, 80)), "with 2 channels in dim 1, got [2, 3, 32, 80]"),
    ("target 4 channels", dict(target=R(2, 4, 32, 80)), "batch['target'] expected shape [B, 2, F, T] with 2 channels"),
    ("batch size mismatch", dict(target=R(3, 2, 32, 80)), "batch['recon'] has shape [2, 2, 32, 80] but batch['target'] has [3, 2, 32, 80]"),
    ("frequency mismatch", dict(target=R(2, 2, 31, 80)), "but batch['target'] has [2, 2, 31, 80]"),
    ("mu/logvar dim mismatch", dict(logvar=R(2, 7)), "batch['mu'] has shape [2, 8] but batch['logvar'] has [2, 7]"),
    ("mu/logvar batch mismatch", dict(logvar=R(3, 8)), "batch['logvar'] has [3, 8]"),
    ("mu rank 1", dict(mu=R(8)), "kl: batch['mu'] expected shape [B, D] (2-D), got [8] (1-D)"),
    ("logvar rank 3", dict(logvar=R(2, 8, 1)), "kl: batch['logvar'] expected shape [B, D] (2-D), got [2, 8, 1]"),
    ("integer recon", dict(recon=torch.ones(2, 2, 32, 80, dtype=torch.int64)), "batch['recon'] expected a floating dtype, got torch.int64"),
    ("bool target", dict(target=torch.ones(2, 2, 32, 80, dtype=torch.bool)), "batch['target'] expected a floating dtype, got torch.bool"),
    ("integer mu", dict(mu=torch.ones(2, 8, dtype=torch.int32)), "kl: batch['mu'] expected a floating dtype, got torch.int32"),
    ("mixed devices recon/target", dict(recon=torch.empty(2, 2, 32, 80, device="meta")), "batch['recon'] is on meta but batch['target'] is on cpu; expected one device"),
    ("mixed devices mu/logvar", dict(logvar=torch.empty(2, 8, device="meta")), "batch['mu'] is on cpu but batch['logvar'] is on meta"),
    ("empty batch", dict(recon=R(0, 2, 32, 80), target=R(0, 2, 32, 80)), "batch['recon'] is empty: shape [0, 2, 32, 80]"),
    ("empty frequency axis", dict(recon=R(2, 2, 0, 80), target=R(2, 2, 0, 80)), "is empty: shape [2, 2, 0, 80]"),
    ("shorter than largest FFT", dict(recon=R(2, 2, 8, 8), target=R(2, 2, 8, 8)), "has 64 samples, shorter than the largest FFT size 2048"),
    ("missing target", dict(target=None), "requires batch key 'target'"),
    ("missing mu", dict(mu=None), "term 'kl' requires batch key 'mu'"),
    ("recon is a list", dict(recon=[[0.0]]), "batch['recon'] expected a tensor [B, 2, F, T], got list"),
    ("mu is a numpy array", dict(mu=np.zeros((2, 8))), "kl: batch['mu'] expected a tensor [B, D], got ndarray"),
]


@pytest.mark.parametrize("name,override,message", TENSOR_CASES, ids=[c[0] for c in TENSOR_CASES])
def test_bad_tensors(name, override, message):
    with pytest.raises(BatchError) as err:
        recipe()(batch(**override))
    assert message in str(err.value)


def test_waveform_shorter_than_largest_fft():
    loss = CombinedLoss(load_config({"recipe": "none", "terms": {"stft": {"input": "waveform"}}}))
    with pytest.raises(BatchError, match="waveform has 1000 samples, shorter than the largest FFT size 2048"):
        loss({"recon": torch.rand(2, 1, 1000), "target": torch.rand(2, 1, 1000)})


CONFIG_CASES = [
    ("fft_sizes a string", {"terms": {"stft": {"fft_sizes": "512"}}}, "terms.stft.fft_sizes[0]: expected int, got '5'"),
    ("weight a string", {"terms": {"stft": {"weight": "1"}}}, "terms.stft.weight: expected a number or a schedule table"),
    ("free_bits a list", {"terms": {"kl": {"free_bits": [0.1]}}}, "terms.kl.free_bits: expected a number, got [0.1]"),
    ("unknown term key", {"terms": {"mag_recon": {"wieght": 1.0}}}, "terms.mag_recon.wieght: unknown key; did you mean 'weight'?"),
    ("unknown top-level key", {"group": {}}, "group: unknown key; did you mean 'groups'?"),
    ("negative weight", {"terms": {"if_recon": {"weight": -0.5}}}, "terms.if_recon.weight: expected a finite weight >= 0, got -0.5"),
    ("NaN weight", {"terms": {"stft": {"weight": math.nan}}}, "terms.stft.weight: expected a finite weight >= 0, got nan"),
    ("inf weight", {"terms": {"stft": {"weight": math.inf}}}, "terms.stft.weight: expected a finite weight >= 0, got inf"),
    ("negative group weight", {"groups": {"reconstruction": {"weight": -1}}}, "groups.reconstruction.weight: expected a finite weight >= 0"),
    ("list lengths differ", {"terms": {"stft": {"win_lengths": [512]}}}, "must have equal lengths, got fft_sizes=3, hop_sizes=3, win_lengths=1"),
    ("hop > win", {"terms": {"stft": {"hop_sizes": [1024, 256, 512]}}}, "terms.stft.hop_sizes[0]: hop 1024 exceeds win_lengths[0]=512"),
    ("win > fft", {"terms": {"stft": {"win_lengths": [512, 1024, 4096], "hop_sizes": [128, 256, 512]}}}, "terms.stft.win_lengths[2]: window 4096 exceeds fft_sizes[2]=2048"),
    ("zero fft size", {"terms": {"stft": {"fft_sizes": [512, 0, 2048]}}}, "terms.stft.fft_sizes[1]: expected a positive size, got 0"),
    ("zero hop size", {"terms": {"stft": {"hop_sizes": [128, 0, 512]}}}, "terms.stft.hop_sizes[1]: expected a positive size, got 0"),
    ("unknown term", {"terms": {"multires": {}}}, "terms.multires: unknown term 'multires'; installed terms: if_recon, kl, mag_recon, stft"),
    ("warm-up fraction > 1", {"terms": {"kl": {"weight": {"schedule": "linear_warmup", "warmup_fraction": 2}}}}, "terms.kl.weight.warmup_fraction: expected 0 <= warmup_fraction <= 1"),
    ("unknown schedule", {"terms": {"kl": {"weight": {"schedule": "exponential"}}}}, "terms.kl.weight: unknown schedule 'exponential'"),
    ("mel without sample rate", {"terms": {"stft": {"scale": "mel", "n_bins": 64}}}, "terms.stft.sample_rate: a positive sample_rate is required"),
    ("unknown recipe", {"recipe": "gan"}, "recipe: expected one of 'vae', 'none', got 'gan'"),
    ("negative free bits", {"terms": {"kl": {"free_bits": -0.1}}}, "terms.kl.free_bits: expected a finite number >= 0, got -0.1"),
    ("terms not a table", {"terms": ["stft"]}, "terms: expected a table of terms by name, got list"),
    ("bad mag_distance", {"terms": {"stft": {"mag_distance": "l1"}}}, "terms.stft.mag_distance: expected one of 'L1', 'L2', got 'l1'"),
]


@pytest.mark.parametrize("name,data,message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_configs(name, data, message):
    with pytest.raises(ConfigError) as err:
        load_config(data)
    assert message in str(err.value)


FILE_CASES = [
    ("duplicate term in TOML", "loss.toml", b"[terms.kl]\nfree_bits = 0.1\n[terms.kl]\nfree_bits = 0.2\n", "cannot parse as TOML"),
    ("duplicate term in YAML", "loss.yaml", b"terms:\n  kl: {free_bits: 0.1}\n  kl: {free_bits: 0.2}\n", "duplicate key 'kl'"),
    ("YAML python tag", "loss.yaml", b"terms: !!python/object/new:os.system [echo hacked]\n", "cannot parse as YAML"),
    ("non-UTF-8", "loss.json", b'{"terms": {"kl": {"free_bits": 0.1}}, "x": "\xe9"}', "not UTF-8 text (line 1, byte"),
    ("top level a list", "loss.json", b"[1, 2]", "expected a table at the top level, got list"),
]


@pytest.mark.parametrize("name,filename,content,message", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_files(tmp_path, name, filename, content, message):
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_10_mb_file_is_refused_in_bounded_time(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_bytes(b"# padding\n" * 1_048_576)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"file is 10485760 bytes; a loss config is at most 1000000"):
        load_config(path)
    assert time.perf_counter() - start < 1.0


def test_catalogue_size():
    assert len(TENSOR_CASES) + len(CONFIG_CASES) + len(FILE_CASES) + 2 >= 40
