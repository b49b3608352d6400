"""Audio for the demo: a synthetic corpus made at run time, or WAV files read with the stdlib."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import attrs
import numpy as np
import torch

from distill_core.files.atomic import WriteError


class AudioError(ValueError):
    """A WAV file or folder the user pointed at cannot be used; the message names it."""


def synthetic_corpus(count: int, samples: int, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """[count, samples] clips: linear chirps, harmonic tones with vibrato, and enveloped noise bursts."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples, dtype=torch.float64) / sample_rate
    clips = []
    for i in range(count):
        u = torch.rand(6, generator=g, dtype=torch.float64)
        kind = i % 3
        if kind == 0:  # chirp
            f0, f1 = 100 + 900 * u[0], 300 + 3000 * u[1]
            duration = samples / sample_rate
            phase = 2 * math.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration))
            x = torch.sin(phase)
        elif kind == 1:  # harmonic tone with vibrato
            f0 = 110 + 330 * u[0]
            vibrato = 1 + 0.01 * (1 + 2 * u[1]) * torch.sin(2 * math.pi * (4 + 3 * u[2]) * t)
            phase = 2 * math.pi * f0 * torch.cumsum(vibrato, 0) / sample_rate
            x = torch.stack([torch.sin(k * phase) / k for k in range(1, 6)]).sum(dim=0)
        else:  # noise burst with an exponential decay
            noise = torch.randn(samples, generator=g, dtype=torch.float64)
            start = int(u[0] * samples * 0.5)
            env = torch.zeros(samples, dtype=torch.float64)
            env[start:] = torch.exp(
                -torch.arange(samples - start, dtype=torch.float64) / (0.05 * sample_rate * (1 + u[1]))
            )
            x = noise * env
        x = x / x.abs().max().clamp(min=1e-9) * (0.3 + 0.5 * u[3])
        clips.append(x.float())
    return torch.stack(clips)


MIN_RATE, MAX_RATE = 1_000, 1_000_000  # Hz: a WAV outside this range is damaged or not audio
STREAMED_SIZE = 0x7FFF_FFFF  # data bytes a streaming writer claims (2**31 - 1 or 2**32 - 1): "until the end"


def _decode(raw: bytes, width: int, channels: int, path: Path) -> np.ndarray:
    """Mono float32 samples in [-1, 1] from little-endian PCM frames (a partial frame at the end is dropped)."""
    raw = raw[: len(raw) - len(raw) % (width * channels)] if 1 <= width <= 4 and channels > 0 else raw
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8)[: len(raw) - len(raw) % 3].reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 8388608
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648
    else:
        raise AudioError(f"{path}: {8 * width}-bit samples are not supported; expected 8, 16, 24 or 32-bit PCM")
    return data[: len(data) - len(data) % channels].reshape(-1, channels).mean(axis=1)


class _WavReader:
    """An open PCM WAV whose header was checked; ``read(n)`` decodes the next n frames (or fewer at the end)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.wav = wave.open(str(path), "rb")
        except (wave.Error, EOFError, RuntimeError, struct.error, ValueError) as exc:
            raise AudioError(f"{path}: not a PCM WAV file this reader supports ({_reason(exc)})") from None
        except OSError as exc:
            raise AudioError(f"{path}: cannot read: {exc.strerror or exc}") from None
        w = self.wav
        self.rate, self.width, self.channels, self.frames = (
            w.getframerate(),
            w.getsampwidth(),
            w.getnchannels(),
            w.getnframes(),
        )
        if not MIN_RATE <= self.rate <= MAX_RATE:
            self.close()
            raise AudioError(
                f"{path}: sample rate {self.rate} Hz is out of range; expected {MIN_RATE} to {MAX_RATE} Hz"
            )
        if self.frames == 0:
            self.close()
            raise AudioError(f"{path}: contains no audio frames")
        self.position = 0  # frames read so far
        # A writer that streams (to a pipe) cannot know the length: it claims the largest size there is, and the
        # file holds what it holds. Any other claim the file falls short of is a file cut short.
        self.streamed = self.frames * self.width * self.channels >= STREAMED_SIZE

    def read(self, frames: int) -> np.ndarray:
        """The next ``frames`` frames (at most those the header claims; fewer at the end of a streamed file); a
        file that ends before them is cut short (a copy or download that stopped), an AudioError naming it."""
        frames = min(frames, self.frames - self.position)
        try:
            raw = self.wav.readframes(frames)
        except (wave.Error, EOFError, RuntimeError, struct.error, ValueError, OSError) as exc:
            raise AudioError(f"{self.path}: cannot read audio frames ({_reason(exc)})") from None
        got = len(raw) // max(1, self.width * self.channels)
        if got < frames and not self.streamed:
            raise AudioError(
                f"{self.path}: cut short: its header claims {self.frames} frames, but the file ends after "
                f"{self.position + got} frames; expected a complete WAV file (copy it again, or remove it)"
            )
        self.position += got
        return _decode(raw, self.width, self.channels, self.path)

    def close(self) -> None:
        self.wav.close()


def _reason(exc: BaseException) -> str:
    return str(exc) or f"{type(exc).__name__}: a chunk header is corrupt or truncated"


def read_wav(path: Path, max_frames: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] (at most ``max_frames``) and the sample rate of a PCM WAV file."""
    reader = _WavReader(path)
    try:
        data = reader.read(reader.frames if max_frames is None else min(max_frames, reader.frames))
    finally:
        reader.close()
    if not len(data):
        raise AudioError(f"{path}: contains no audio frames")
    return data, reader.rate


def resample(x: torch.Tensor, source_rate: int, target_rate: int, n_out: int | None = None) -> torch.Tensor:
    """Band-limited resampling of a 1-D signal by truncating or zero-padding its spectrum."""
    if n_out is None:
        if source_rate == target_rate:
            return x
        n_out = max(1, round(x.shape[-1] * target_rate / source_rate))
    if n_out == x.shape[-1]:
        return x
    spec = torch.fft.rfft(x.double())
    bins = n_out // 2 + 1
    if spec.shape[-1] >= bins:
        spec = spec[..., :bins]
    else:
        spec = torch.cat([spec, spec.new_zeros(bins - spec.shape[-1])])
    return (torch.fft.irfft(spec, n=n_out) * (n_out / x.shape[-1])).float()


def wav_clips(path: Path, samples: int, sample_rate: int, max_clips: int) -> list[torch.Tensor]:
    """Up to ``max_clips`` clips of ``samples`` at ``sample_rate`` from one WAV file.

    Each clip's span of the file is read and resampled on its own, so memory scales with one clip,
    whatever the file's length or rate. A file shorter than one clip becomes one zero-padded clip.
    """
    reader = _WavReader(path)
    try:
        span = samples * reader.rate / sample_rate  # source frames per clip
        if reader.frames < span:
            x = torch.from_numpy(reader.read(reader.frames))
            if not len(x):
                raise AudioError(f"{path}: contains no audio frames")
            x = resample(x, reader.rate, sample_rate)[:samples]
            return [torch.nn.functional.pad(x, (0, samples - x.shape[-1]))]
        clips: list[torch.Tensor] = []
        for k in range(min(max_clips, int(reader.frames // span))):
            want = round((k + 1) * span) - round(k * span)
            frames = reader.read(want)  # an AudioError when the file ends before the frames its header claims
            if len(frames) < want:  # the end of a streamed file
                break
            clips.append(resample(torch.from_numpy(frames), reader.rate, sample_rate, n_out=samples))
        if not clips:
            raise AudioError(f"{path}: contains no audio frames (the header claims {reader.frames})")
        return clips
    finally:
        reader.close()


@attrs.define
class WavCorpus:
    """Clips read from a folder, and how much of the folder they came from (for telling the user)."""

    clips: torch.Tensor  # [N, samples]
    files_found: int
    files_used: int


def read_wav_corpus(folder: Path, samples: int, sample_rate: int, max_clips: int = 256) -> WavCorpus:
    """Clips of ``samples`` from the .wav files under ``folder`` (sorted, until ``max_clips``), resampled to
    ``sample_rate`` and mono."""
    if not folder.exists():
        raise AudioError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise AudioError(f"{folder}: expected a folder of .wav files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav")
    if not files:
        raise AudioError(f"{folder}: no .wav files found (expected a folder of .wav files)")
    clips: list[torch.Tensor] = []
    used = 0
    for path in files:
        clips += wav_clips(path, samples, sample_rate, max_clips - len(clips))
        used += 1
        if len(clips) >= max_clips:
            break
    return WavCorpus(torch.stack(clips), len(files), used)


def wav_corpus(folder: Path, samples: int, sample_rate: int, max_clips: int = 256) -> torch.Tensor:
    """Clips of ``samples`` from every .wav under ``folder``, resampled to ``sample_rate`` and mono."""
    return read_wav_corpus(folder, samples, sample_rate, max_clips).clips


def write_wav(path: Path, x: torch.Tensor, sample_rate: int) -> None:
    """16-bit mono PCM; a failed write (disk full) is a WriteError naming the file."""
    pcm = (x.detach().cpu().clamp(-1, 1).numpy() * 32767).astype("<i2")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.tobytes())
    except OSError as exc:
        raise WriteError(path, exc) from exc
