"""Which differences between runs are real: paired tests over the clips that every run reconstructed.

Every run scores the same held-out clips, so two runs' values of one metric are pairs. For each pair of runs
and each metric this gives the Wilcoxon signed-rank p-value of the per-clip differences (scipy.stats.wilcoxon,
two-sided) and a bootstrap confidence interval of their mean (scipy.stats.bootstrap, BCa), as a Markdown
table. (The figure of one clip's spectrogram per run is plots.py's ``spectrogram_figure``.)
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from distill_core.util.extras import require


@attrs.define(frozen=True)
class PairedTest:
    """One metric, runs ``a`` and ``b``: the mean of a - b over the clips both scored finitely, its CI, and p."""

    metric: str
    a: str
    b: str
    clips: int
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float


def _wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p (zero differences dropped, Wilcoxon's rule); 1.0 when all are zero."""
    stats = require("scipy.stats", "paired statistics (distill-loss compare)", "train")
    if not np.any(differences != 0):
        return 1.0  # no clip differs: no evidence of a difference (scipy returns nan here)
    return float(stats.wilcoxon(differences).pvalue)


def _bootstrap_ci(differences: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    """BCa bootstrap interval of the mean difference; a point where all differences are equal, nan for n < 2."""
    stats = require("scipy.stats", "paired statistics (distill-loss compare)", "train")
    if len(differences) < 2:
        return math.nan, math.nan
    if np.ptp(differences) == 0:
        return float(differences[0]), float(differences[0])
    with warnings.catch_warnings():  # BCa on tiny samples may warn that its acceleration is unstable
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            (differences,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_test(
    metric: str,
    a: str,
    b: str,
    values_a: Sequence[float],
    values_b: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> PairedTest:
    """The paired comparison of two runs' per-clip values of one metric (clips where either is nan are left out)."""
    if len(values_a) != len(values_b):
        raise ValueError(
            f"{metric}: {a} has {len(values_a)} clip values and {b} has {len(values_b)}; expected "
            "the same clips for both runs"
        )
    x, y = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    if not len(d):
        return PairedTest(metric, a, b, 0, math.nan, math.nan, math.nan, math.nan)
    low, high = _bootstrap_ci(d, confidence, n_resamples, seed)
    return PairedTest(metric, a, b, len(d), float(d.mean()), low, high, _wilcoxon_p(d))


def paired_tests(
    scores: Mapping[str, Mapping[str, Sequence[float]]],
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> list[PairedTest]:
    """Every pair of runs (in the order given) for every metric: ``scores[run][metric]`` is a per-clip list."""
    runs = list(scores)
    if metrics is None:
        metrics = list(scores[runs[0]]) if runs else []
    return [
        paired_test(metric, a, b, scores[a][metric], scores[b][metric], confidence, n_resamples, seed)
        for metric in metrics
        for a, b in itertools.combinations(runs, 2)
    ]


def min_clips(alpha: float) -> int:
    """The fewest clips whose two-sided Wilcoxon signed-rank p can fall below ``alpha``: with n clips that all
    differ one way the exact p is 2 / 2**n, its smallest (8 clips for alpha = 0.01)."""
    n = 1
    while 2.0 / 2.0**n >= alpha and n < 64:
        n += 1
    return n


def _too_few(clips: int, alpha: float) -> str:
    """Why no paired test is given: ``clips`` cannot reach ``alpha``, and how many would."""
    said = f"too few clips for a paired test ({clips}; p < {alpha:g} needs at least {min_clips(alpha)}"
    if clips:
        said += f"; the smallest p {clips} clip{'s' if clips != 1 else ''} can give is {2.0 / 2.0**clips:.2g}"
    return said + ")"


def _verdict(test: PairedTest, higher_is_better: bool | None, alpha: float) -> str:
    if test.clips < min_clips(alpha):
        return _too_few(test.clips, alpha)
    if not test.p_value < alpha or test.mean_difference == 0:
        return "no significant difference"
    if higher_is_better is None:
        return f"{test.a} higher" if test.mean_difference > 0 else f"{test.b} higher"
    a_better = (test.mean_difference > 0) == higher_is_better
    return f"{test.a if a_better else test.b} better"


def paired_markdown(
    tests: Sequence[PairedTest],
    higher_is_better: Mapping[str, bool] | None = None,
    alpha: float = 0.01,
    confidence: float = 0.95,
) -> str:
    """The tests as a Markdown section: one row per metric and pair; empty when there is nothing to pair."""
    if not tests:
        return ""
    needed = min_clips(alpha)
    if all(t.clips < needed for t in tests):  # no verdict, CI or p to give: say so, once
        clips = max(t.clips for t in tests)
        return (
            f"## Paired differences over clips\n\nNot tested: {_too_few(clips, alpha)}. Compare on {needed} or "
            "more clips (--clips, and a --data folder that holds them).\n"
        )
    better = higher_is_better or {}
    strict = alpha / len(tests)
    lines = [
        f"## Paired differences over clips ({len(tests)} tests)",
        "",
        f"Per clip, x - y; {confidence:.0%} CI: BCa bootstrap of the mean difference; p: two-sided "
        f"Wilcoxon signed-rank test. A verdict needs p < {alpha:g}; † marks p < {strict:.2g}, "
        f"{alpha:g} with Bonferroni's correction for all {len(tests)} tests.",
        "",
        f"| metric | run x | run y | clips | mean x - y | {confidence:.0%} CI | p | verdict |",
        "|---" * 8 + "|",
    ]
    for t in tests:
        mark = " †" if t.p_value < strict and t.clips >= needed else ""
        ci = f"[{t.ci_low:.4g}, {t.ci_high:.4g}]" if math.isfinite(t.ci_low) and math.isfinite(t.ci_high) else "n/a"
        lines.append(
            f"| {t.metric} | {t.a} | {t.b} | {t.clips} | {t.mean_difference:.4g} | "
            f"{ci} | {t.p_value:.2g}{mark} | "
            f"{_verdict(t, better.get(t.metric), alpha)} |"
        )
    return "\n".join(lines) + "\n"
