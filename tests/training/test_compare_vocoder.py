"""examples/compare_vocoder.py end to end at a tiny budget: six recipes trained, saved, compared, tested."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

from distill_core.training.audio import synthetic_corpus, write_wav
from distill_core.training.audio_metrics import METRICS
from distill_core.training.metrics import MetricsHistory
from distill_core.training.vocoder import load_vocoder

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("compare_vocoder", ROOT / "examples" / "compare_vocoder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _corpus(folder: Path) -> Path:
    for split, seed, files in (("train", 0, 3), ("held_out", 1, 4)):  # held out: 8 clips that are not silent
        for i, clip in enumerate(synthetic_corpus(files, 24000, 16000, seed=seed)):
            write_wav(folder / split / f"{i}.wav", clip, 16000)
    return folder


@pytest.fixture
def one_thread():
    """One torch thread, as --threads 1 sets it: two threads contend badly on a shared 2-core machine."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_end_to_end_at_two_steps(tmp_path, capsys, one_thread):
    script = _script()
    out = tmp_path / "runs"
    code = script.main(
        [
            "--corpus",
            str(_corpus(tmp_path / "speech")),
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--segment",
            "2048",
            "--rounds",
            "2",
            "--clips",
            "12",  # 8 or more are not silent: the fewest a paired test at p < 0.01 takes
            "--clip-seconds",
            "0.5",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    names = ["a_wave_l1", "b_mrstft", "c_mel", "d_mel_mrstft", "e_mel_adversarial", "f_bigvgan_v2"]
    for name in names:
        run = out / name
        assert {"best.pt", "last.pt", "config.toml", "lock.json", "vocoder.json", "history.json", "losses.png"} <= {
            p.name for p in run.iterdir()
        }
        history = MetricsHistory.load(run / "history.json")
        assert len(history.epochs) == 2 and math.isfinite(history.epochs[-1].val_loss)
        load_vocoder(run)  # the folder rebuilds its model
    adversarial = torch.load(out / "e_mel_adversarial" / "last.pt", weights_only=False)["loss"]
    assert any(".discriminators." in key for key in adversarial)  # D's state is saved with the run
    assert (
        "adversarial_disc_loss"
        in MetricsHistory.load(out / "e_mel_adversarial" / "history.json").to_dict()["distill"]["epochs"][-1][
            "components"
        ]
    )  # D's own loss is logged beside the generator's terms
    config = (out / "d_mel_mrstft" / "config.toml").read_text()
    assert "[terms.mel]" in config and "[terms.stft]" in config and "sample_rate = 16000" in config
    bigvgan = (out / "f_bigvgan_v2" / "config.toml").read_text()  # the recipe, resolved, at the corpus's rate
    assert 'kind = "cqtd"' in bigvgan and "sample_rate = 16000" in bigvgan and "grad_clip = 500.0" in bigvgan
    md = (out / "compare" / "compare.md").read_text()
    shown = re.search(r"# Reconstruction of (\d+) held-out clips of 0.50 s", md)
    assert shown and int(shown.group(1)) >= 8, md[:200]
    assert all(f"| {name} |" in md for name in names)
    assert f"## Paired differences over clips ({15 * len(METRICS)} tests)" in md  # 15 pairs x every metric
    assert md.strip() in capsys.readouterr().out
    files = {p.name for p in (out / "compare").rglob("*")}
    assert {"compare.png", "spectrograms.png", "clip00_original.wav", "clip00_c_mel.wav"} <= files
    before = (out / "c_mel" / "best.pt").read_bytes()
    assert script.main(["--corpus", str(tmp_path / "speech"), "--out", str(out), "--recipes", "c_mel"]) == 2
    err = capsys.readouterr().err
    assert f"error: {out} already holds results ({out / 'c_mel' / 'history.json'}" in err
    assert err.strip().endswith("choose another --out or pass --overwrite to replace them")
    assert (out / "c_mel" / "best.pt").read_bytes() == before  # nothing was touched
    assert (
        script.main(
            [
                "--corpus",
                str(tmp_path / "speech"),
                "--out",
                str(out),
                "--evaluate-only",
                "--clips",
                "12",
                "--clip-seconds",
                "0.5",
                "--recipes",
                "c_mel",
                "a_wave_l1",
            ]
        )
        == 0
    )  # runs trained apart
    md = (out / "compare" / "compare.md").read_text()
    assert f"## Paired differences over clips ({len(METRICS)} tests)" in md and "| b_mrstft |" not in md
    assert (out / "c_mel" / "best.pt").read_bytes() == before
    assert (
        script.main(
            [
                "--corpus",
                str(tmp_path / "speech"),
                "--out",
                str(tmp_path / "none"),
                "--evaluate-only",
                "--recipes",
                "c_mel",
            ]
        )
        == 2
    )
    assert f"no trained run at {tmp_path / 'none' / 'c_mel' / 'best.pt'}" in capsys.readouterr().err


def test_the_runs_differ_only_in_the_loss(tmp_path, one_thread):
    torch.set_num_threads(1)
    script = _script()
    corpus = _corpus(tmp_path / "speech")
    first = [
        script.train_recipe(name, script.RECIPES[name], corpus, tmp_path / "runs", 1, 0, 2, 2048, 1e-3, 1)
        for name in ("a_wave_l1", "c_mel")
    ]
    start = [torch.load(run / "best.pt", weights_only=True)["model"] for run in first]
    # one step apart from the same initial weights: same seed, same first batch, a different gradient
    assert start[0].keys() == start[1].keys()
    assert any(not torch.equal(start[0][k], start[1][k]) for k in start[0])
    torch.manual_seed(0)
    from distill_core.training.vocoder import Vocoder

    init = Vocoder().state_dict()
    for state in start:  # Adam's first step moves each weight by about lr: both began at the same weights
        assert all((state[k] - init[k]).abs().max() < 2e-3 for k in init)
    again = script.train_recipe(
        "a_wave_l1", script.RECIPES["a_wave_l1"], corpus, tmp_path / "again", 1, 0, 2, 2048, 1e-3, 1
    )
    repeat = torch.load(again / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(repeat[k], start[0][k]) for k in repeat)  # the same seed trains the same weights


def test_missing_corpus_is_one_line_and_exit_2(tmp_path, capsys):
    assert _script().main(["--corpus", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'none' / 'train'}: no such folder; make the corpus first")


def test_bad_settings_are_named_in_one_line(tmp_path, capsys):
    corpus = _corpus(tmp_path / "speech")
    assert (
        _script().main(["--corpus", str(corpus), "--out", str(tmp_path / "runs"), "--steps", "0", "--segment", "1000"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --steps 0, --segment 1000: expected --steps, --batch-size, --rounds and --clips")
    assert "\n" not in err and not (tmp_path / "runs").exists()
