"""TensorBoard events for a run: a training callback that writes scalars at the existing log points (the floats
StepMetrics and EpochMetrics already carry: no extra host sync), per-epoch audio and spectrogram images of
the samples, the resolved config as text with the hyperparameters, and what each tag holds (``TAGS``, as text)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from distill_core.config.converter import converter
from distill_core.training.metrics import NAMED_TERMS, EpochMetrics, MetricsHistory, StepMetrics
from distill_core.training.plots import term_curves
from distill_core.training.spectrogram import from_spectrogram
from distill_core.util.extras import available

#: () -> (original waveforms [S, N], reconstructions [S, N], original spectrograms, reconstructed ones [S, 2, F, T])
Samples = Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


# What each tag (or family of tags) holds; written once as the run's "tags" text, so TensorBoard itself says it.
TAGS: dict[str, str] = {
    "total/train": "the epoch's mean training total: every term weighted, stateful ones (a discriminator's "
    "adversarial term) included: the objective the model's gradient came from",
    "total/val": "the epoch's mean validation total, stateful terms weighed 0 (their value moves with what they "
    "train), so it picks best.pt; compare per-term values (train/<term>, val/<term>) across the two, not totals",
    "overfitting_gap": "(total/val - total/train) / total/train, the seed's; with a stateful term the two totals "
    "weigh different terms",
    "train/<term>, val/<term>": "each term's mean value over the epoch, unweighted",
    "weight/<term>": "each term's and group's weight that epoch (schedules evaluated)",
    "balancer/<figure>": "the gradient balancer's ratios and norms, when enabled",
    "update/<term>_disc_loss": "a stateful term's own loss in its update step (the discriminator's), per epoch",
    "update/<term>_real_score": "the mean logit the discriminator gave the real (target) batch in its update "
    "step, averaged over sub-discriminators and discriminators: raw, any sign (LSGAN trains it towards 1, "
    "hinge above 1)",
    "update/<term>_fake_score": "the same mean logit on the model's output (detached): LSGAN trains it towards 0, "
    "hinge below -1; the gap to real_score is how well the discriminator tells them apart",
    "step/<key>, step_update/<figure>": "the same figures for each logged window of training steps",
    "learning_rate, nonfinite_steps, kl_divergence": "the model's learning rate; steps skipped for a non-finite "
    "loss or gradient; the VAE's raw KL (VAE runs only)",
}


def tags_text() -> str:
    """TAGS as a Markdown table."""
    rows = "\n".join(f"| `{tag}` | {what} |" for tag, what in TAGS.items())
    return "| tag | what |\n|---|---|\n" + rows


def tensorboard_available() -> bool:
    """Whether torch's SummaryWriter can run (the tensorboard package of the ``train`` extra is installed)."""
    return available("tensorboard")


def _scalars(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k.removesuffix('_loss')}": float(v) for k, v in values.items() if v is not None}


def _figures(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    """Update-step figures under their full key (``adversarial_disc_loss`` keeps its ``_loss``: no clash with a
    component's tag)."""
    return {f"{prefix}/{k}": float(v) for k, v in values.items() if v is not None}


def epoch_scalars(metrics: EpochMetrics) -> dict[str, float]:
    """Every scalar of one epoch by tag: totals, each term's train and val value, weights, the balancer's
    ratios and state, the loss's update-step figures (``update/<term>_<figure>``), non-finite steps, the raw KL
    and the learning rate."""

    out = {
        "total/train": metrics.train_loss,
        "total/val": metrics.val_loss,
        "nonfinite_steps": float(metrics.nonfinite_steps),
        "learning_rate": metrics.learning_rate,
        "overfitting_gap": metrics.overfitting_gap,
    }
    if (math.isfinite(metrics.kl_divergence) and metrics.kl_divergence) or "kl_loss" in metrics.val_components:
        # measured by the VAE's adapter (0.0 or NaN where nothing measured it)
        out["kl_divergence"] = metrics.kl_divergence
    for term, (train, val) in term_curves(MetricsHistory(epochs=[metrics])).items():
        name = term.removesuffix("_loss")
        if math.isfinite(train[0]):
            out[f"train/{name}"] = train[0]
        out[f"val/{name}"] = val[0]
    out.update(_scalars("weight", getattr(metrics, "weights", None) or {}))
    out.update(_scalars("balancer", getattr(metrics, "balancer", None) or {}))
    out.update(_figures("update", getattr(metrics, "metrics", None) or {}))
    return out


def step_scalars(metrics: StepMetrics) -> dict[str, float]:
    """A logged step's scalars (means over the steps since the previous log)."""
    terms = dict(metrics.components) or {
        k: getattr(metrics, k)
        for k in (*NAMED_TERMS, "kl_loss")
        if math.isfinite(getattr(metrics, k)) and getattr(metrics, k)
    }  # older histories name only the seed's (0.0 or NaN: not configured, not measured)
    out = {
        "step/total": metrics.train_loss,
        "step/nonfinite": float(metrics.nonfinite_steps),
        "step/learning_rate": metrics.learning_rate,
        **_scalars("step", terms),
    }
    if "kl_loss" in terms:  # the seed's field: the KL term's weight that step
        out["step/kl_weight"] = metrics.kl_weight
    out.update(_figures("step_update", getattr(metrics, "metrics", None) or {}))
    return out


def _image(spec: torch.Tensor) -> torch.Tensor:
    """The log-magnitude channel of one [2, F, T] spectrogram as a [1, F, T] image in [0, 1], low bins at the
    bottom."""
    mag = spec[0].float().flip(0)
    low, high = mag.min(), mag.max()
    return ((mag - low) / (high - low).clamp(min=1e-8))[None]


def _flat(hparams: Mapping[str, Any]) -> dict[str, float | str | bool]:
    """HParams accept numbers, strings and booleans; anything else (a schedule, None) goes in as text."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}


class TensorBoardLogger:
    """A ``train`` callback writing events into ``log_dir`` (the run folder)."""

    def __init__(
        self,
        log_dir: str | os.PathLike,
        *,
        config_text: str = "",
        hparams: Mapping[str, Any] | None = None,
        samples: Samples | None = None,
        sample_rate: int = 16000,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.samples = samples
        self.sample_rate = sample_rate
        self.writer.add_text("tags", tags_text(), global_step=0)
        if config_text:
            fenced = "\n".join("    " + line for line in config_text.splitlines())  # a Markdown code block
            self.writer.add_text("config", fenced, global_step=0)
        if hparams:
            file_writer = self.writer.file_writer
            assert file_writer is not None  # SummaryWriter's constructor opens it
            for summary in hparams_summary(_flat(hparams), {"total/val": math.nan, "total/train": math.nan}):
                file_writer.add_summary(summary)

    def __call__(self, metrics: Any) -> None:
        if isinstance(metrics, StepMetrics):
            step = metrics.epoch * max(metrics.total_steps, 1) + metrics.step + 1  # steps done (step is 0-based)
            for tag, value in step_scalars(metrics).items():
                self.writer.add_scalar(tag, value, step)
        elif isinstance(metrics, EpochMetrics):
            epoch = metrics.epoch + 1
            for tag, value in epoch_scalars(metrics).items():
                self.writer.add_scalar(tag, value, epoch)
            if self.samples is not None:
                self._samples(epoch)
            self.writer.flush()

    def _samples(self, epoch: int) -> None:
        originals, recons, original_specs, recon_specs = self.samples()  # type: ignore[misc]
        for i, (wave, recon, spec, recon_spec) in enumerate(zip(originals, recons, original_specs, recon_specs)):
            self.writer.add_audio(f"sample_{i:02d}/original", wave.clamp(-1, 1)[None], epoch, self.sample_rate)
            self.writer.add_audio(f"sample_{i:02d}/reconstruction", recon.clamp(-1, 1)[None], epoch, self.sample_rate)
            self.writer.add_image(f"sample_{i:02d}/original_spectrogram", _image(spec), epoch)
            self.writer.add_image(f"sample_{i:02d}/reconstruction_spectrogram", _image(recon_spec), epoch)

    def close(self) -> None:
        self.writer.close()


def demo_logger(
    run_dir: Path,
    settings: Any,
    config_text: str,
    loss_hparams: Mapping[str, Any],
    model: torch.nn.Module,
    originals: torch.Tensor,
) -> TensorBoardLogger | None:
    """The demo run's logger (None when TensorBoard is not installed or ``settings.tensorboard`` is off): its
    samples are the model's reconstructions of ``originals`` ([S, 2, F, T] validation spectrograms)."""
    if not getattr(settings, "tensorboard", True) or not tensorboard_available():
        return None

    spec = settings.spectrogram
    device = torch.device(settings.device)

    @torch.no_grad()
    def samples() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        was_training = model.training
        model.eval()
        recon = model(originals.to(device))[0].float().cpu()
        model.train(was_training)
        return from_spectrogram(originals, spec), from_spectrogram(recon, spec), originals, recon

    hparams = {
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "seed": settings.seed,
        "data": str(settings.data or "synthetic"),
        "mel_bins": spec.mel_bins or 0,
        **loss_hparams,
    }
    return TensorBoardLogger(
        run_dir, config_text=config_text, hparams=hparams, samples=samples, sample_rate=spec.sample_rate
    )


def loss_hparams(config: Any) -> dict[str, Any]:
    """Each term's and group's weight from a LossConfig, as ``weight/<name>`` (schedules as their text)."""

    data = converter.unstructure(config)
    out: dict[str, Any] = {}
    for table in ("terms", "groups"):
        for name, section in (data.get(table) or {}).items():
            if isinstance(section, Mapping) and "weight" in section:
                out[f"weight/{name}"] = section["weight"]
    return out
