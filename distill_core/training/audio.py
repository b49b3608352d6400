"""Audio for the demo: a synthetic corpus made at run time, or WAV files read with the stdlib."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import torch


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
            phase = 2 * math.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * duration))
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
            env[start:] = torch.exp(-torch.arange(samples - start, dtype=torch.float64) / (0.05 * sample_rate
                                                                                        * (1 + u[1])))
            x = noise * env
        x = x / x.abs().max().clamp(min=1e-9) * (0.3 + 0.5 * u[3])
        clips.append(x.float())
    return torch.stack(clips)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate of a PCM WAV file."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, width, channels, frames = w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{path}: not a PCM WAV file this reader supports ({exc})") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if frames == 0 or not raw:
        raise AudioError(f"{path}: contains no audio frames")
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 8388608
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648
    else:
        raise AudioError(f"{path}: {8 * width}-bit samples are not supported; expected 8, 16, 24 or 32-bit PCM")
    data = data[: len(data) - len(data) % channels].reshape(-1, channels).mean(axis=1)
    return data, rate


def resample(x: torch.Tensor, source_rate: int, target_rate: int) -> torch.Tensor:
    """Band-limited resampling of a 1-D signal by truncating or zero-padding its spectrum."""
    if source_rate == target_rate:
        return x
    n_out = max(1, round(x.shape[-1] * target_rate / source_rate))
    spec = torch.fft.rfft(x.double())
    bins = n_out // 2 + 1
    if spec.shape[-1] >= bins:
        spec = spec[..., :bins]
    else:
        spec = torch.cat([spec, spec.new_zeros(bins - spec.shape[-1])])
    return (torch.fft.irfft(spec, n=n_out) * (n_out / x.shape[-1])).float()


def wav_corpus(folder: Path, samples: int, sample_rate: int, max_clips: int = 256) -> torch.Tensor:
    """Clips of ``samples`` from every .wav under ``folder``, resampled to ``sample_rate`` and mono."""
    if not folder.exists():
        raise AudioError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise AudioError(f"{folder}: expected a folder of .wav files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav")
    if not files:
        raise AudioError(f"{folder}: no .wav files found (expected a folder of .wav files)")
    clips: list[torch.Tensor] = []
    for path in files:
        data, rate = read_wav(path)
        x = resample(torch.from_numpy(data), rate, sample_rate)
        if x.shape[-1] < samples:
            x = torch.nn.functional.pad(x, (0, samples - x.shape[-1]))
        for start in range(0, x.shape[-1] - samples + 1, samples):
            clips.append(x[start:start + samples])
            if len(clips) >= max_clips:
                return torch.stack(clips)
    return torch.stack(clips)


def write_wav(path: Path, x: torch.Tensor, sample_rate: int) -> None:
    """16-bit mono PCM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (x.detach().cpu().clamp(-1, 1).numpy() * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
