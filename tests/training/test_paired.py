"""Paired statistics for compare: the Wilcoxon p-values and bootstrap CIs against scipy itself, the table, the
figure, and compare.md's paired section."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from distill_core.training.audio_metrics import METRICS
from distill_core.training.compare import REFERENCE, Comparison, markdown
from distill_core.training.paired import paired_markdown, paired_test, paired_tests
from distill_core.training.plots import spectrogram_figure


@pytest.mark.parametrize(
    "a,b",
    [
        ([0.9, 1.4, 2.2, 0.3, 1.7, 2.9, 0.8, 1.1, 3.0, 0.4], [0.5, 1.1, 2.6, 0.1, 0.9, 2.2, 0.2, 1.0, 2.1, 0.6]),
        ([1, 2, 3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 5, 5, 5, 5]),  # ties among |d| and one zero difference
        ([1.0, 2.0, 3.5, 4.0], [0.5, 1.2, 2.0, 3.1]),  # n < 6: the exact test cannot go below 2 / 2^n
    ],
)
def test_wilcoxon_p_is_scipys(a, b):
    test = paired_test("m", "x", "y", a, b)
    assert test.p_value == pytest.approx(stats.wilcoxon(np.subtract(a, b)).pvalue, rel=1e-12)
    assert test.mean_difference == pytest.approx(np.mean(np.subtract(a, b)), rel=1e-12)
    assert test.clips == len(a)


def test_small_samples_cannot_be_significant():
    test = paired_test("m", "x", "y", [2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0])  # every clip better
    assert test.p_value == pytest.approx(0.125)  # two-sided exact: 2 / 2^4
    section = paired_markdown([test])
    # four clips cannot reach p < 0.01 whatever they hold: said as such, with no verdict, table or mark
    assert section == (
        "## Paired differences over clips\n\nNot tested: too few clips for a paired test (4; p < 0.01 needs at "
        "least 8; the smallest p 4 clips can give is 0.12). Compare on 8 or more clips (--clips, and a --data "
        "folder that holds them).\n"
    )


def test_bootstrap_ci_is_scipys_bca_with_the_same_generator():
    g = np.random.default_rng(1)
    a, b = g.normal(1.0, 0.5, 30), g.normal(0.8, 0.5, 30)
    test = paired_test("m", "x", "y", a, b, n_resamples=2000, seed=7)
    oracle = stats.bootstrap((a - b,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(7))
    assert (test.ci_low, test.ci_high) == pytest.approx(
        (oracle.confidence_interval.low, oracle.confidence_interval.high), rel=1e-12
    )
    assert test.ci_low < test.mean_difference < test.ci_high


def test_degenerate_differences():
    same = paired_test("m", "x", "y", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (same.p_value, same.ci_low, same.ci_high, same.mean_difference) == (1.0, 0.0, 0.0, 0.0)
    shift = paired_test("m", "x", "y", [1.5, 2.5, 3.5], [1.0, 2.0, 3.0])
    assert (shift.ci_low, shift.ci_high) == (0.5, 0.5)
    one = paired_test("m", "x", "y", [2.0], [1.0])
    assert one.clips == 1 and math.isnan(one.ci_low)


def test_nan_clips_are_left_out_of_both_runs():
    test = paired_test(
        "m", "x", "y", [1.0, math.nan, 3.0, 4.0, 6.0, 2.0, 9.0], [0.5, 2.0, math.nan, 3.0, 1.0, 2.5, 4.0]
    )
    d = np.array([0.5, 1.0, 5.0, -0.5, 5.0])
    assert test.clips == 5 and test.p_value == pytest.approx(stats.wilcoxon(d).pvalue)
    with pytest.raises(ValueError, match="m: x has 2 clip values and y has 3"):
        paired_test("m", "x", "y", [1.0, 2.0], [1.0, 2.0, 3.0])


def test_every_pair_and_metric_and_the_verdicts():
    g = np.random.default_rng(0)
    base = g.normal(5.0, 1.0, 40)
    scores = {
        "good": {"err": list(base - 1.0), "snr": list(base + 3.0)},
        "bad": {"err": list(base + g.normal(0, 0.01, 40)), "snr": list(base + g.normal(0, 0.01, 40))},
        "other": {"err": list(base + g.normal(0, 1.0, 40)), "snr": list(base)},
    }
    tests = paired_tests(scores, n_resamples=500)
    assert [(t.metric, t.a, t.b) for t in tests] == [
        ("err", "good", "bad"),
        ("err", "good", "other"),
        ("err", "bad", "other"),
        ("snr", "good", "bad"),
        ("snr", "good", "other"),
        ("snr", "bad", "other"),
    ]
    table = paired_markdown(tests, {"err": False, "snr": True})
    rows = {
        tuple(cell.strip() for cell in line.split("|")[1:4]): line
        for line in table.splitlines()
        if line.startswith("| err") or line.startswith("| snr")
    }
    assert rows[("err", "good", "bad")].endswith("| good better |")  # lower error
    assert rows[("snr", "good", "bad")].endswith("| good better |")  # higher SNR
    assert "†" in rows[("err", "good", "bad")]  # p ~ 4e-8 < 0.01 / 6
    assert "(6 tests)" in table
    assert paired_markdown([]) == ""


def test_compare_markdown_gains_the_paired_section_for_two_runs_only():
    g = np.random.default_rng(3)
    metric = dict(METRICS)  # every metric compare computes here (PESQ/STOI too where [metrics] is installed)
    scores = {
        REFERENCE: {k: list(g.normal(0, 1, 8)) for k in metric},
        "a": {k: list(g.normal(0, 1, 8)) for k in metric},
    }
    one = markdown(Comparison(data=Path("held"), clips=8, seconds=1.0, runs=[], scores=scores))
    assert "Paired differences" not in one and "The first row inverts" in one
    scores["b"] = {k: list(g.normal(0, 1, 8)) for k in metric}
    two = markdown(Comparison(data=Path("held"), clips=8, seconds=1.0, runs=[], scores=scores))
    assert (
        f"## Paired differences over clips ({len(METRICS)} tests)" in two
    )  # a vs b only: the reference row is not paired
    assert REFERENCE not in two.split("## Paired")[1]
    del scores[REFERENCE]
    assert "The first row inverts" not in markdown(
        Comparison(data=Path("held"), clips=8, seconds=1.0, runs=[], scores=scores)
    )


def test_spectrogram_figure_writes_one_panel_per_run(tmp_path):
    t = torch.arange(8000) / 16000
    clip = 0.5 * torch.sin(2 * math.pi * 440 * t)
    path = spectrogram_figure(clip, {"a": 0.5 * clip, "b": torch.zeros_like(clip)}, 16000, tmp_path / "s.png")
    from matplotlib.image import imread

    image = imread(path)
    assert image.shape[0] > 3 * 150  # three stacked panels of about 190 px
