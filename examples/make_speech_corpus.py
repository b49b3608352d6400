"""Render a small real-speech corpus without the internet: espeak-ng reads varied English text with several
voices, pitches and rates (training set); the held-out set is Debian's alsa-utils voice recordings plus
espeak-ng voices that the training set never uses. Every file is 16 kHz mono 16-bit PCM.

    python examples/make_speech_corpus.py --out data/speech

writes ``data/speech/train/*.wav`` and ``data/speech/held_out/*.wav``. The same files come out on every run
(espeak-ng is deterministic and every choice here is a fixed table), so a comparison trained on them can be
reproduced. Needs ``espeak-ng`` (``apt-get install espeak-ng``); the held-out alsa recordings come with
``alsa-utils`` and are skipped, with a note, where they are absent.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from distill_core.training.audio import read_wav, resample, write_wav

SAMPLE_RATE = 16_000
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")

# Written for this corpus: varied vocabulary, numbers, questions and lists, so that every voice says many
# phoneme contexts at several speaking styles.
SENTENCES = (
    "The lighthouse keeper counted seven ships before the fog rolled in from the north.",
    "Would you mind closing the window? The wind keeps scattering my papers across the floor.",
    "Fresh bread, sharp cheese and a bowl of cold plums made a perfect lunch by the river.",
    "At twenty past nine the train finally left the station, two hours behind schedule.",
    "She measured the voltage twice, frowned, and reached for a smaller screwdriver.",
    "Every autumn the geese fly south in long, uneven lines above the quiet village.",
    "Please remember to water the tomatoes, feed the cat and lock the garden gate.",
    "The orchestra tuned up slowly while the audience whispered in the dark hall.",
    "How many grains of sand would it take to fill a single thimble to the brim?",
    "Thunder rumbled over the hills, and the children ran laughing into the barn.",
    "A careful reader notices the small details that a hurried one always misses.",
    "The recipe calls for three eggs, a cup of flour and a pinch of salt.",
    "Our neighbour repairs old clocks in a workshop that smells of oil and pine.",
    "Jupiter and Saturn were bright enough to see even from the middle of the city.",
    "He apologised for the delay and promised the report would arrive on Thursday.",
    "The museum opens at ten, but the queue usually starts forming an hour earlier.",
    "Quickly now, grab the blue umbrella; the forecast says heavy showers all afternoon.",
    "Zebras, giraffes and a very curious ostrich wandered past the jeep at dawn.",
    "Numbers like four hundred and sixty-two are easy to say but hard to remember.",
    "The violinist played a slow melody that seemed to hang in the cold evening air.",
    "Why does the kettle always boil faster when nobody is watching it?",
    "Measure twice and cut once, my grandfather used to say in his dusty shed.",
    "The bridge was closed for repairs, so we drove the long way around the lake.",
    "Soft rain fell on the rooftops while the city slowly went to sleep.",
    "Yesterday the market sold peaches, pears, walnuts and jars of golden honey.",
    "If the signal drops again, restart the router and wait for the green light.",
    "The old map showed a hidden path that wound between two jagged mountains.",
    "Good morning everyone; today we will talk about rivers, rain and the water cycle.",
)

# (espeak-ng voice, pitch 0-99, words per minute): the training voices, each read at its pitch and rate
# +-10 and +-15 by turns (make_corpus). Variants are espeak-ng's +m / +f.
TRAIN_VOICES = (
    ("en-us+m1", 45, 160),
    ("en-us+f2", 60, 150),
    ("en-gb+m3", 35, 175),
    ("en-gb+f4", 70, 140),
    ("en-029+m5", 50, 185),
    ("en-gb-x-rp+f1", 55, 165),
)
# Voices (language and variant) that the training set never uses, for the held-out set.
HELD_OUT_VOICES = (("en-gb-scotland+m7", 40, 155), ("en-us+f5", 65, 170))
HELD_OUT_SENTENCES = 6  # the last sentences of the text: read by each held-out voice, by no training voice


class CorpusError(RuntimeError):
    """espeak-ng is missing or failed; the message names the command."""


def espeak_binary() -> str:
    """The espeak-ng executable on PATH, or a CorpusError saying how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise CorpusError("espeak-ng not found on PATH; install it with: apt-get install espeak-ng")
    return path


def render(text: str, voice: str, pitch: int, rate: int, path: Path, binary: str) -> Path:
    """One utterance through espeak-ng, resampled from its native rate to 16 kHz mono and written to ``path``."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        command = [binary, "-v", voice, "-p", str(pitch), "-s", str(rate), "-w", str(raw), text]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not raw.is_file():
            raise CorpusError(f"{' '.join(command[:7])} ...: exit {result.returncode}: {result.stderr.strip()}")
        samples, rate_in = read_wav(raw)
    wave = resample(torch.from_numpy(samples), rate_in, SAMPLE_RATE)
    write_wav(path, wave, SAMPLE_RATE)
    return path


def make_corpus(
    out: Path,
    sentences: tuple[str, ...] = SENTENCES,
    held_out_sentences: int = HELD_OUT_SENTENCES,
    alsa: Path = ALSA_SOUNDS,
) -> tuple[list[Path], list[Path]]:
    """The training and held-out WAVs under ``out/train`` and ``out/held_out``: (train files, held-out files).

    The last ``held_out_sentences`` sentences are held out: the held-out voices read them, no training voice
    does. Every other sentence is read by two training voices (sentence i by voices i and i + 1 mod count),
    so each voice reads a third of the training text.
    """
    binary = espeak_binary()
    split = len(sentences) - held_out_sentences
    train: list[Path] = []
    for i, text in enumerate(sentences[:split]):
        for k in (0, 1):
            v = (i + k) % len(TRAIN_VOICES)
            voice, pitch, rate = TRAIN_VOICES[v]
            pitch += 10 * (i % 3 - 1)  # each voice a little lower, at, or above its pitch, in turn
            rate += 15 * (i // 3 % 3 - 1)  # and slower, at, or faster than its rate
            train.append(render(text, voice, pitch, rate, out / "train" / f"s{i:02d}_v{v}.wav", binary))
    held_out: list[Path] = []
    for v, (voice, pitch, rate) in enumerate(HELD_OUT_VOICES):
        for i, text in enumerate(sentences[split:]):
            held_out.append(render(text, voice, pitch, rate, out / "held_out" / f"espeak_h{v}_s{i:02d}.wav", binary))
    for path in sorted(alsa.glob("*.wav")) if alsa.is_dir() else []:
        if path.name == "Noise.wav":  # not speech
            continue
        samples, rate_in = read_wav(path)
        target = out / "held_out" / f"alsa_{path.stem}.wav"
        write_wav(target, resample(torch.from_numpy(samples), rate_in, SAMPLE_RATE), SAMPLE_RATE)
        held_out.append(target)
    return train, held_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/speech"), help="corpus folder (train/, held_out/)")
    parser.add_argument(
        "--sentences",
        type=int,
        default=len(SENTENCES),
        help=f"use only the first N sentences (default all {len(SENTENCES)})",
    )
    parser.add_argument(
        "--held-out-sentences",
        type=int,
        default=HELD_OUT_SENTENCES,
        help="the last N sentences: read only by the held-out espeak-ng voices",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.sentences <= len(SENTENCES):
        parser.error(f"--sentences: expected 1 to {len(SENTENCES)}, got {args.sentences}")
    if not 0 <= args.held_out_sentences < args.sentences:
        parser.error(
            f"--held-out-sentences: expected 0 to --sentences - 1 ({args.sentences - 1}), got {args.held_out_sentences}"
        )
    try:
        train, held_out = make_corpus(args.out, SENTENCES[: args.sentences], args.held_out_sentences)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not ALSA_SOUNDS.is_dir():
        print(
            f"note: {ALSA_SOUNDS} not found (apt-get install alsa-utils); held-out set is espeak-ng only",
            file=sys.stderr,
        )
    print(
        f"wrote {len(train)} training files to {args.out / 'train'} and {len(held_out)} held-out files to "
        f"{args.out / 'held_out'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
