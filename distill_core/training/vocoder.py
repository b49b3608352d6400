"""A small mel-to-waveform vocoder: the demo waveform model, small enough to learn speech on two CPU cores.

The generator follows HiFi-GAN's (Kong et al., NeurIPS 2020, sec. 2.1): a 1-D convolution over the log-mel
frames, then transposed convolutions that upsample by the hop in stages, each followed by a multi-receptive
field fusion (the mean of residual blocks of different kernel sizes and dilations), and a tanh output.
The shape is HiFi-GAN V3's upsampling (rates 8, 8, 4 with kernels of twice the rate) at half its initial
channels (128), with residual blocks of kernels 3, 5 and 7 that each hold two pairs of a dilated (1, 2) and a
plain convolution: 564k parameters.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import attrs
import torch
from torch import nn

from distill_core.dsp.mel import mel_filterbank
from distill_core.training.checkpoint import CheckpointError, load_checkpoint
from distill_core.training.settings_file import load_settings, save_settings


@attrs.define(frozen=True)
class VocoderConfig:
    """The mel front end and the generator's shape; the product of ``upsample_rates`` must equal ``hop``."""

    sample_rate: int = 16_000
    n_fft: int = 1024
    hop: int = 256
    mel_bins: int = 80
    fmin: float = 0.0
    fmax: float | None = 8_000.0
    channels: int = 128
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    resblock_kernels: tuple[int, ...] = (3, 5, 7)
    resblock_dilations: tuple[int, ...] = (1, 2)

    def __attrs_post_init__(self) -> None:
        if math.prod(self.upsample_rates) != self.hop:
            raise ValueError(
                f"VocoderConfig: upsample_rates {list(self.upsample_rates)} multiply to "
                f"{math.prod(self.upsample_rates)}, expected the hop ({self.hop})"
            )
        if self.channels % 2 ** len(self.upsample_rates):
            raise ValueError(
                f"VocoderConfig: channels={self.channels} must be divisible by 2 ** "
                f"{len(self.upsample_rates)} (halved at every upsampling stage)"
            )


VOCODER_FILE = "vocoder.json"  # in a run folder: the vocoder's settings, and the sign that the run is a vocoder's


def save_vocoder_config(config: VocoderConfig, path: str | os.PathLike) -> Path:
    """JSON beside a run's checkpoints, so the run's model can be rebuilt for evaluation."""
    return save_settings(config, path)


def load_vocoder_config(path: str | os.PathLike) -> VocoderConfig:
    """The settings save_vocoder_config wrote; a CheckpointError names the file and the problem when invalid."""
    return load_settings(path, VocoderConfig, "vocoder")


class LogMel(nn.Module):
    """[B, 1, N] or [B, N] waveforms -> [B, mel_bins, N // hop] natural-log mel magnitudes (floored at 1e-5).

    A centred Hann STFT gives N // hop + 1 frames for N samples; the last is dropped, so that the vocoder's
    output (frames x hop samples) has the input's length whenever N is a multiple of the hop.
    """

    filterbank: torch.Tensor  # [mel_bins, n_fft // 2 + 1], a buffer
    window: torch.Tensor  # [n_fft], a buffer

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        self.n_fft, self.hop = config.n_fft, config.hop
        fb = mel_filterbank(config.sample_rate, config.n_fft, config.mel_bins, fmin=config.fmin, fmax=config.fmax)
        self.register_buffer("filterbank", torch.from_numpy(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave.reshape(-1, wave.shape[-1])
        spec = torch.stft(x.float(), self.n_fft, self.hop, window=self.window, return_complex=True)
        mel = torch.matmul(self.filterbank, spec.abs()[..., :-1])
        return torch.log(mel.clamp(min=1e-5))


class ResBlock(nn.Module):
    """Pairs of dilated and plain convolutions with leaky ReLUs, each pair added back to its input."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2) for d in dilations
        )
        self.plain = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.dilated, self.plain):
            x = x + plain(nn.functional.leaky_relu(dilated(nn.functional.leaky_relu(x, 0.1)), 0.1))
        return x


class Vocoder(nn.Module):
    """Log-mel frames [B, mel_bins, T] -> waveform [B, 1, T * hop] in (-1, 1)."""

    def __init__(self, config: VocoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = VocoderConfig() if config is None else config
        self.mel = LogMel(config)
        self.pre = nn.Conv1d(config.mel_bins, config.channels, 7, padding=3)
        self.ups = nn.ModuleList()
        self.fusions = nn.ModuleList()
        width = config.channels
        for rate in config.upsample_rates:
            self.ups.append(
                nn.ConvTranspose1d(
                    width, width // 2, 2 * rate, stride=rate, padding=rate // 2 + rate % 2, output_padding=rate % 2
                )
            )
            width //= 2
            self.fusions.append(
                nn.ModuleList(ResBlock(width, k, config.resblock_dilations) for k in config.resblock_kernels)
            )
        self.post = nn.Conv1d(width, 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.pre(mel)
        for up, blocks in zip(self.ups, self.fusions):
            assert isinstance(blocks, nn.ModuleList)  # each fusion is the ModuleList of its ResBlocks (__init__)
            x = up(nn.functional.leaky_relu(x, 0.1))
            x = sum(block(x) for block in blocks) / len(blocks)
        return torch.tanh(self.post(nn.functional.leaky_relu(x, 0.1)))


def vocoder_batch(model: Vocoder, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss's batch for waveforms [B, 1, N] (N a multiple of the hop): ``recon_wave``, ``target_wave``
    ([B, 1, N]) and ``mel``, the model's input ([B, mel_bins, N // hop])."""
    target = inputs if inputs.dim() == 3 else inputs.unsqueeze(1)
    if target.dim() != 3 or target.shape[1] != 1 or target.shape[-1] % model.config.hop:
        raise ValueError(
            f"vocoder_batch: inputs of shape {list(inputs.shape)}; expected [B, 1, N] or [B, N] "
            f"waveforms with N a multiple of the hop ({model.config.hop})"
        )
    with torch.no_grad():
        mel = model.mel(target)
    return {"recon_wave": model(mel), "target_wave": target, "mel": mel}


class VocoderAdapter:
    """train()'s adapter for the vocoder: loader items are waveforms [B, 1, N], the batch is vocoder_batch's."""

    outputs = ("recon_wave",)  # the model's, carrying its gradient
    given = ("target_wave", "mel")  # the loader's waveform and the model's input, made from it

    def provides(self) -> tuple[str, ...]:
        """Every batch key this adapter gives a loss."""
        return (*self.outputs, *self.given)

    def carries_gradient(self) -> tuple[str, ...]:
        """The keys the model's output carries a gradient to (the only ones a balancer may scale at)."""
        return self.outputs

    def __call__(self, model: nn.Module, inputs: torch.Tensor, reads: frozenset[str]) -> dict[str, torch.Tensor]:
        return vocoder_batch(model, inputs)  # type: ignore[arg-type]


@torch.no_grad()
def vocode(model: Vocoder, clips: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """[N, samples] clips -> the model's reconstructions [N, samples] (padded to the hop, then trimmed)."""
    hop = model.config.hop
    samples = clips.shape[-1]
    padded = nn.functional.pad(clips, (0, -samples % hop))
    device = next(model.parameters()).device
    out = [model(model.mel(chunk.to(device)))[:, 0].cpu() for chunk in padded.split(batch_size)]
    return torch.cat(out)[:, :samples]


def load_vocoder(run: str | os.PathLike, checkpoint: str = "best.pt") -> Vocoder:
    """A run folder's vocoder (its vocoder.json and the weights in ``checkpoint``), in eval mode on the CPU."""
    folder = Path(run)
    config = load_vocoder_config(folder / VOCODER_FILE)
    path = folder / checkpoint
    weights = load_checkpoint(path).get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: holds no model weights (expected a 'model' state dict)")
    model = Vocoder(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the vocoder of {folder / VOCODER_FILE}: {str(exc).splitlines()[0]}"
        ) from None
    return model.eval()
