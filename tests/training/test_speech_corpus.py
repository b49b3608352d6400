"""examples/make_speech_corpus.py: espeak-ng renders the training and held-out speech, deterministically."""

from __future__ import annotations

import importlib.util
import shutil
import wave
from pathlib import Path

import pytest
import torch

from distill_core.training.audio import write_wav

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)


def _script():
    spec = importlib.util.spec_from_file_location("make_speech_corpus", ROOT / "examples" / "make_speech_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alsa_like(folder: Path) -> Path:
    """A stand-in for /usr/share/sounds/alsa: one 48 kHz 'voice' and the Noise.wav that must be left out."""
    t = torch.arange(48000) / 48000
    write_wav(folder / "Front_Center.wav", 0.3 * torch.sin(2 * torch.pi * 300 * t), 48000)
    write_wav(folder / "Noise.wav", 0.1 * torch.randn(48000), 48000)
    return folder


def test_two_sentences_render_to_16k_mono_the_same_every_run(tmp_path):
    corpus = _script()
    alsa = _alsa_like(tmp_path / "alsa")
    sentences = ("The quick brown fox jumps over the lazy dog.", "Soft rain fell on the rooftops.")
    train, held = corpus.make_corpus(tmp_path / "one", sentences, held_out_sentences=1, alsa=alsa)
    again, held_again = corpus.make_corpus(tmp_path / "two", sentences, held_out_sentences=1, alsa=alsa)
    assert [p.name for p in train] == ["s00_v0.wav", "s00_v1.wav"]  # the first sentence, two training voices
    assert [p.name for p in held] == ["espeak_h0_s00.wav", "espeak_h1_s00.wav", "alsa_Front_Center.wav"]
    for a, b in zip(train + held, again + held_again):
        assert a.read_bytes() == b.read_bytes(), a.name
    for path in train + held:
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            assert w.getnframes() > 8000  # at least half a second of speech
    with wave.open(str(held[-1])) as w:
        assert w.getnframes() == 16000  # one second at 48 kHz, resampled
    assert train[0].read_bytes() != train[1].read_bytes()  # two voices say the same sentence differently


def test_held_out_voices_are_not_training_voices():
    corpus = _script()
    assert not {v for v, _, _ in corpus.HELD_OUT_VOICES} & {v for v, _, _ in corpus.TRAIN_VOICES}
    variants = {v.split("+")[1] for v, _, _ in corpus.TRAIN_VOICES}
    assert not {v.split("+")[1] for v, _, _ in corpus.HELD_OUT_VOICES} & variants
    assert sum(len(s.split()) for s in corpus.SENTENCES) > 300


def test_missing_espeak_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    corpus = _script()
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    assert corpus.main(["--out", str(tmp_path / "c"), "--sentences", "2", "--held-out-sentences", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: espeak-ng not found on PATH; install it with: apt-get install espeak-ng"
