"""What ``distill-loss train`` prints: the progress bar's figures for a logged step and the line per epoch, each
term's value next to the loss's update-step figures (a discriminator's loss and its real/fake scores)."""

from __future__ import annotations

from distill_core.training.metrics import EpochMetrics, StepMetrics

__all__ = ["console_values", "epoch_line"]


def _short(key: str) -> str:
    return key.removesuffix("_loss")


def console_values(metrics: StepMetrics) -> dict[str, float]:
    """A logged step's figures by short name: each component (``stft``), then each update figure
    (``adversarial_disc``, ``adversarial_real_score``)."""
    return {
        **{_short(k): v for k, v in metrics.components.items()},
        **{_short(k): v for k, v in metrics.metrics.items()},
    }


def epoch_line(metrics: EpochMetrics) -> str:
    """``epoch 2/20: train 1.2345  val 1.3456  (stft 0.512, ...)  update: adversarial_disc 0.498, ...``"""
    terms = ", ".join(f"{_short(k)} {v:.3f}" for k, v in metrics.val_components.items())
    line = (
        f"epoch {metrics.epoch + 1}/{metrics.total_epochs}: train {metrics.train_loss:.4f}  "
        f"val {metrics.val_loss:.4f}  ({terms})"
    )
    if metrics.metrics:
        line += "  update: " + ", ".join(f"{_short(k)} {v:.3f}" for k, v in metrics.metrics.items())
    return line
