"""The paired statistics' edges that `make mutate` found unpinned (issue 36): the defaults (9999 resamples, seed 0,
95%), float64 differences, the empty and two-clip cases, min_clips' bounds, the verdict at its edges, and the
Markdown table as a whole. Expected values come from scipy run directly, or are the table's own format."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from distill_core.training.paired import PairedTest, min_clips, paired_markdown, paired_test, paired_tests

A = [0.9, 1.4, 2.2, 0.3, 1.7, 2.9, 0.8, 1.1, 3.0, 0.4]
B = [0.5, 1.1, 2.6, 0.1, 0.9, 2.2, 0.2, 1.0, 2.1, 0.6]


def scipy_ci(d: np.ndarray, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> tuple[float, float]:
    ci = stats.bootstrap(
        (d,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="BCa",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(ci.low), float(ci.high)


def test_the_defaults_are_9999_bca_resamples_from_seed_0_at_95_percent():
    d = np.subtract(A, B)
    test = paired_test("m", "x", "y", A, B)
    assert (test.ci_low, test.ci_high) == scipy_ci(d)
    assert scipy_ci(d) != scipy_ci(d, n_resamples=10000) and scipy_ci(d) != scipy_ci(d, seed=1)
    (listed,) = paired_tests({"x": {"m": A}, "y": {"m": B}})
    assert listed == test  # paired_tests passes the same defaults


def test_the_confidence_level_is_passed_on():
    d = np.subtract(A, B)
    test = paired_test("m", "x", "y", A, B, confidence=0.8)
    assert (test.ci_low, test.ci_high) == scipy_ci(d, confidence=0.8)
    (listed,) = paired_tests({"x": {"m": A}, "y": {"m": B}}, confidence=0.8, seed=3)
    assert (listed.ci_low, listed.ci_high) == scipy_ci(d, confidence=0.8, seed=3)


def test_differences_are_taken_in_float64_whatever_the_inputs_dtype():
    a, b = np.float32(A) / np.float32(3.0), np.float32(B) / np.float32(7.0)
    test = paired_test("m", "x", "y", a, b)
    exact = np.float64(a) - np.float64(b)
    assert test.mean_difference == float(exact.mean())
    assert test.mean_difference != float((a - b).mean())  # the float32 difference is another number here


def test_no_finite_pair_is_an_empty_test_with_its_names():
    test = paired_test("stoi", "run a", "run b", [math.nan, 1.0], [2.0, math.inf])
    assert (test.metric, test.a, test.b, test.clips) == ("stoi", "run a", "run b", 0)
    assert all(math.isnan(v) for v in (test.mean_difference, test.ci_low, test.ci_high, test.p_value))


def test_two_clips_get_a_bootstrap_interval_and_one_clip_none():
    two = paired_test("m", "x", "y", [1.0, 2.5], [0.5, 0.5])
    assert math.isfinite(two.ci_low) and math.isfinite(two.ci_high)
    one = paired_test("m", "x", "y", [1.0], [0.5])
    assert math.isnan(one.ci_low) and math.isnan(one.ci_high) and one.mean_difference == 0.5


def test_equal_nonzero_differences_have_a_point_interval_and_a_p_from_scipy():
    test = paired_test("m", "x", "y", [2.0] * 10, [1.0] * 10)  # every difference is 1
    assert (test.ci_low, test.ci_high) == (1.0, 1.0)
    assert test.p_value == pytest.approx(stats.wilcoxon(np.ones(10)).pvalue, rel=1e-12)
    assert test.p_value < 0.01  # not the 1.0 of all-zero differences


def test_no_runs_no_tests():
    assert paired_tests({}) == []


def test_the_same_seed_gives_the_same_interval_every_call():
    first, second = paired_tests({"x": {"m": A}, "y": {"m": B}}), paired_tests({"x": {"m": A}, "y": {"m": B}})
    assert first == second


@pytest.mark.parametrize(
    "alpha, clips",
    [
        (0.01, 8),  # 2 / 2^7 = 0.0156 >= 0.01, 2 / 2^8 = 0.0078 < 0.01
        (2 / 2**8, 9),  # p = alpha exactly is not below it
        (0.05, 6),
        (1e-30, 64),  # capped
    ],
)
def test_min_clips(alpha, clips):
    assert min_clips(alpha) == clips


def row(a: str, b: str, clips: int, mean: float, low: float, high: float, p: float) -> PairedTest:
    return PairedTest("LSD", a, b, clips, mean, low, high, p)


def test_the_table_as_a_whole():
    tests = [
        row("x", "y", 8, 0.5, 0.25, 0.75, 0.001),  # 8 clips: enough at 0.01; below 0.01 / 4, so marked
        row("x", "z", 12, -0.5, -0.75, -0.25, 0.01),  # p = alpha: no verdict
        row("y", "z", 9, 0.0, -0.1, 0.1, 0.0001),  # significant p, but no difference
        row("x", "w", 3, 0.25, math.nan, math.nan, 0.25),  # too few clips, no interval
    ]
    assert paired_markdown(tests, {"LSD": False}) == (
        "## Paired differences over clips (4 tests)\n"
        "\n"
        "Per clip, x - y; 95% CI: BCa bootstrap of the mean difference; p: two-sided Wilcoxon signed-rank test. "
        "A verdict needs p < 0.01; † marks p < 0.0025, 0.01 with Bonferroni's correction for all 4 tests.\n"
        "\n"
        "| metric | run x | run y | clips | mean x - y | 95% CI | p | verdict |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| LSD | x | y | 8 | 0.5 | [0.25, 0.75] | 0.001 † | y better |\n"
        "| LSD | x | z | 12 | -0.5 | [-0.75, -0.25] | 0.01 | no significant difference |\n"
        "| LSD | y | z | 9 | 0 | [-0.1, 0.1] | 0.0001 † | no significant difference |\n"
        "| LSD | x | w | 3 | 0.25 | n/a | 0.25 | too few clips for a paired test (3; p < 0.01 needs at least 8; "
        "the smallest p 3 clips can give is 0.25) |\n"
    )


@pytest.mark.parametrize(
    "higher_is_better, mean, verdict",
    [
        (None, 0.5, "x higher"),
        (None, -0.5, "y higher"),
        (True, 0.5, "x better"),
        (True, -0.5, "y better"),
        (False, 0.5, "y better"),
        (True, 0.25, "x better"),  # a mean below 1 is a difference too
    ],
)
def test_the_verdicts_direction(higher_is_better, mean, verdict):
    better = {} if higher_is_better is None else {"LSD": higher_is_better}
    table = paired_markdown([row("x", "y", 10, mean, mean - 0.1, mean + 0.1, 0.001)], better)
    assert table.rstrip("\n").endswith(f"| {verdict} |")


def test_runs_of_different_clip_counts_are_refused_naming_both():
    with pytest.raises(ValueError) as info:
        paired_test("stoi", "run a", "run b", [1.0, 2.0, 3.0], [1.0, 2.0])
    assert str(info.value) == "stoi: run a has 3 clip values and run b has 2; expected the same clips for both runs"
