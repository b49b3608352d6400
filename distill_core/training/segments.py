"""Random fixed-length segments of WAV files on disk: training data for waveform models (the vocoder)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from distill_core.training.audio import AudioError, read_wav, resample


def wav_files(folder: Path) -> list[Path]:
    """Every .wav under ``folder``, sorted; an AudioError names the folder when there is none."""
    if not folder.is_dir():
        raise AudioError(f"{folder}: {'no such folder' if not folder.exists() else 'expected a folder'} of .wav files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav")
    if not files:
        raise AudioError(f"{folder}: no .wav files found (expected a folder of .wav files)")
    return files


def load_waves(folder: Path, sample_rate: int) -> list[torch.Tensor]:
    """Every WAV under ``folder`` as one mono float32 signal at ``sample_rate`` (whole files, in memory)."""
    waves = []
    for path in wav_files(folder):
        samples, rate = read_wav(path)
        waves.append(resample(torch.from_numpy(samples), rate, sample_rate))
    return waves


def _check_sizes(samples: int, count: int) -> None:
    if samples < 1 or count < 1:
        raise ValueError(f"WavSegments: samples={samples} and count={count}; expected both >= 1")


class WavSegments(Dataset):
    """``count`` segments of ``samples`` each, [1, samples], cut at random from a folder's WAVs.

    Item i is drawn by a generator seeded with (seed, i): a file with probability proportional to its length,
    then an offset in it. The same seed gives the same segments in any order and any worker; files shorter
    than a segment are zero-padded at the end.
    """

    def __init__(self, folder: Path, samples: int, sample_rate: int, count: int, seed: int = 0) -> None:
        _check_sizes(samples, count)
        self._cut(load_waves(Path(folder), sample_rate), samples, count, seed)
        self.folder: Path | None = Path(folder)

    @classmethod
    def of_waves(cls, waves: Sequence[torch.Tensor], samples: int, count: int, seed: int = 0) -> WavSegments:
        """The same segments of signals already in memory (1-D, one rate): the generated fallback corpus."""
        _check_sizes(samples, count)
        segments = cls.__new__(cls)
        segments._cut(list(waves), samples, count, seed)
        segments.folder = None
        return segments

    def _cut(self, waves: list[torch.Tensor], samples: int, count: int, seed: int) -> None:
        self.samples, self.count, self.seed, self.waves = samples, count, seed, waves
        lengths = torch.tensor([float(w.shape[-1]) for w in self.waves])
        self.weights = lengths / lengths.sum()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.count:
            raise IndexError(f"WavSegments: index {index} out of range 0..{self.count - 1}")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        wave = self.waves[int(torch.multinomial(self.weights, 1, generator=g))]
        spare = wave.shape[-1] - self.samples
        if spare <= 0:
            return torch.nn.functional.pad(wave, (0, -spare))[None]
        start = int(torch.randint(spare + 1, (1,), generator=g))
        return wave[start : start + self.samples][None]
