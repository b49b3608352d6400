"""compare on too few clips for a paired test says so instead of a verdict (issue 36, item 10), and its significance
mark is Bonferroni's p < alpha / number of tests (item 18)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from distill_core.training.audio_metrics import METRICS
from distill_core.training.compare import Comparison, markdown
from distill_core.training.paired import PairedTest, min_clips, paired_markdown, paired_test


def test_the_fewest_clips_a_paired_test_can_decide_on():
    assert [min_clips(a) for a in (0.05, 0.01, 0.001)] == [6, 8, 11]  # 2 / 2**n < alpha
    assert 2 / 2**7 > 0.01 > 2 / 2**8


@pytest.mark.parametrize("clips", [1, 2, 7])
def test_too_few_clips_give_no_verdict_ci_or_mark(clips):
    a = [1.0 + i for i in range(clips)]
    b = [0.5 * v for v in a]
    section = paired_markdown([paired_test("LSD", "x", "y", a, b)])
    assert section.splitlines()[2].startswith(
        f"Not tested: too few clips for a paired test ({clips}; p < 0.01 needs at least 8; the smallest p {clips} "
        f"clip{'s' if clips > 1 else ''} can give is"
    )
    assert "better" not in section and "no significant difference" not in section and "nan" not in section


def test_compare_on_one_clip_says_so_for_every_metric():
    scores = {name: {m: [0.25 + i] for m in METRICS} for i, name in enumerate(("a", "b"))}
    md = markdown(Comparison(data=Path("held"), clips=1, seconds=0.5, runs=[], scores=scores))
    assert "± 0.000" not in md and "[nan, nan]" not in md and " better |" not in md
    assert "| a | " + " | ".join(["0.250 (one clip)"] * len(METRICS)) + " |" in md
    assert (
        "Not tested: too few clips for a paired test (1; p < 0.01 needs at least 8; the smallest p 1 clip can give is 1)"
        in md
    )


def test_a_row_with_too_few_finite_clips_among_enough_says_so():
    many = paired_test("m", "x", "y", [float(i) for i in range(2, 12)], [0.0] * 10)
    few = paired_test(
        "n", "x", "y", [1.0, 2.0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 3.0, 4.0], [0.0] * 10
    )
    rows = {
        line.split("|")[1].strip(): line for line in paired_markdown([many, few]).splitlines() if line.startswith("| ")
    }
    assert rows["m"].endswith("| x higher |")
    assert "too few clips for a paired test (4;" in rows["n"] and "†" not in rows["n"]


def _test(p: float, metric: str) -> PairedTest:
    return PairedTest(metric, "x", "y", 20, 1.0, 0.5, 1.5, p)


@pytest.mark.parametrize("p, marked", [(0.007, False), (0.005, False), (0.0049, True), (0.002, True)])
def test_the_mark_is_bonferronis_alpha_over_the_number_of_tests(p, marked):
    section = paired_markdown([_test(p, "m"), _test(0.9, "n")], alpha=0.01)  # two tests: alpha / 2 = 0.005
    row = next(line for line in section.splitlines() if line.startswith("| m "))
    assert ("†" in row) is marked
    assert row.endswith("| x higher |")  # every one of them p < alpha: a verdict, marked or not
    assert "† marks p < 0.005, 0.01 with Bonferroni's correction for all 2 tests" in section


@pytest.mark.e2e
def test_the_compare_command_on_one_clip(tmp_path, one_torch_thread):
    """A real run and the real command: one held-out clip, and compare says a paired test needs more."""
    import signal

    import torch
    from click.testing import CliRunner

    from distill_core.cli.main import main
    from distill_core.training.audio import write_wav
    from distill_core.training.run import DemoSettings, run_demo

    before = signal.getsignal(signal.SIGTERM)
    try:
        run_demo(
            DemoSettings(name="a", out=tmp_path, epochs=1, clips=4, batch_size=2, tensorboard=False), progress=False
        )
    finally:
        signal.signal(signal.SIGTERM, before)
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    held = tmp_path / "held"
    write_wav(held / "one.wav", 0.3 * torch.sin(torch.arange(8064) / 7.0), 16_000)
    result = CliRunner().invoke(
        main, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--data", str(held), "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    md = (tmp_path / "c" / "compare.md").read_text()
    assert "# Reconstruction of 1 held-out clip of " in md
    assert "Not tested: too few clips for a paired test (1; p < 0.01 needs at least 8" in md
    assert " better |" not in md and "no significant difference" not in md and "[nan, nan]" not in md
    assert "(one clip)" in md and "± 0.000" not in md
