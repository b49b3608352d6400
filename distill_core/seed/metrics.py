"""The seed's metrics records: StepMetrics and EpochMetrics, dataclasses as the seed's are (``asdict``, ``fields``
and ``replace`` work on them), with the seed's fields first (its reader loads our histories), every configured
term's value after them; and how a step's or an epoch's averaged loss outputs fill them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from distill_core.engine.passes import Window


@dataclasses.dataclass
class StepMetrics:
    """One logged training step (values averaged over the steps since the previous log); ``step`` is the
    0-based index of the last step logged, as the seed counts.

    The first twelve fields are the seed's; ``components`` holds every configured term's value
    (``<term>_loss``), the four recipe terms included; ``metrics`` the loss's update step's figures
    (``<term>_<figure>``, e.g. a discriminator's loss and scores), averaged over the steps that had them.
    """

    epoch: int
    step: int
    total_steps: int
    train_loss: float
    recon_loss: float
    kl_loss: float
    kl_weight: float
    learning_rate: float
    step_time_s: float
    stft_loss: float = 0.0
    mag_recon_loss: float = 0.0
    if_recon_loss: float = 0.0
    components: dict[str, float] = dataclasses.field(default_factory=dict)
    nonfinite_steps: int = 0
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class EpochMetrics:
    """One finished epoch: train and validation losses, per term, weights and timing.

    The first fourteen fields are the seed's. ``components`` / ``val_components`` hold every configured
    term's train / validation value, ``weights`` each term's and group's weight that epoch, ``balancer``
    the gradient balancer's figures (``ratio_<term>``, ``ema_norm_<term>``) when one is enabled, ``metrics``
    the loss's update step's figures over the epoch's training steps (nothing updates in validation).
    """

    epoch: int
    total_epochs: int
    train_loss: float
    val_loss: float
    val_recon_loss: float
    val_kl_loss: float
    kl_divergence: float
    overfitting_gap: float
    learning_rate: float
    eta_seconds: float
    elapsed_seconds: float
    val_stft_loss: float = 0.0
    val_mag_recon_loss: float = 0.0
    val_if_recon_loss: float = 0.0
    components: dict[str, float] = dataclasses.field(default_factory=dict)
    val_components: dict[str, float] = dataclasses.field(default_factory=dict)
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    balancer: dict[str, float] = dataclasses.field(default_factory=dict)
    nonfinite_steps: int = 0
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


# The seed's per-term fields, by the loss output each stands for (files older than ``components`` name the
# recipe's terms only there).
NAMED_FIELDS: dict[type, dict[str, str]] = {
    StepMetrics: {
        "stft_loss": "stft_loss",
        "mag_recon_loss": "mag_recon_loss",
        "if_recon_loss": "if_recon_loss",
        "kl_loss": "kl_loss",
    },
    EpochMetrics: {
        "val_stft_loss": "stft_loss",
        "val_mag_recon_loss": "mag_recon_loss",
        "val_if_recon_loss": "if_recon_loss",
        "val_kl_loss": "kl_loss",
    },
}
NAMED_TERMS = ("stft_loss", "mag_recon_loss", "if_recon_loss")
KL_TERM = "kl"  # the weight StepMetrics.kl_weight shows


def overfitting_gap(train_loss: float, val_loss: float) -> float:
    """The seed's relative gap ``(val - train) / train``: positive means validation is worse; 0 if train is 0."""
    return (val_loss - train_loss) / train_loss if train_loss > 0 else 0.0


def term_values(values: Mapping[str, float], term_keys: Sequence[str]) -> dict[str, float]:
    """The configured terms' values (``<term>_loss``) out of a dict of averaged loss values."""
    return {k: values[k] for k in term_keys if k in values}


def step_fields(values: Mapping[str, float], term_keys: Sequence[str]) -> dict[str, Any]:
    """StepMetrics' per-term keyword arguments: the seed's named fields and every term in ``components``."""
    return {**{k: values[k] for k in NAMED_TERMS if k in values}, "components": term_values(values, term_keys)}


def update_metrics(values: Mapping[str, float]) -> dict[str, float]:
    """The update step's figures out of a pass's averages (``Means.metrics`` names them; none for a plain dict)."""
    return {k: values[k] for k in sorted(getattr(values, "metrics", ()))}


def step_metrics(window: Window, weights: Mapping[str, float], term_keys: Sequence[str]) -> StepMetrics:
    """A reported window of steps as the seed's StepMetrics; fields of terms the loss lacks are 0.0."""
    means = window.means
    return StepMetrics(
        epoch=window.epoch,
        step=window.step,
        total_steps=window.total_steps,
        train_loss=means.get("total_loss", math.nan),
        recon_loss=means.get("recon_loss", 0.0),
        kl_loss=means.get("kl_loss", 0.0),
        kl_weight=weights.get(KL_TERM, 0.0),
        learning_rate=window.learning_rate,
        step_time_s=window.step_time_s,
        nonfinite_steps=int(means.get("nonfinite", 0)),
        metrics={k: means[k] for k in sorted(window.metrics)},
        **step_fields(means, term_keys),
    )


def epoch_metrics(
    epoch: int,
    epochs: int,
    train: Mapping[str, float],
    val: Mapping[str, float],
    lr: float,
    elapsed: float,
    done: int,
    term_keys: Sequence[str],
    weights: Mapping[str, float],
) -> EpochMetrics:
    """A finished epoch as the seed's EpochMetrics: its fields from the loss outputs that have them."""
    train_loss, val_loss = train.get("total_loss", math.nan), val.get("total_loss", math.nan)
    named = {field: val.get(key, 0.0) for field, key in NAMED_FIELDS[EpochMetrics].items()}
    return EpochMetrics(
        epoch=epoch,
        total_epochs=epochs,
        train_loss=train_loss,
        val_loss=val_loss,
        val_recon_loss=val.get("recon_loss", 0.0),
        kl_divergence=val.get("kl_divergence", 0.0),
        overfitting_gap=overfitting_gap(train_loss, val_loss),
        learning_rate=lr,
        eta_seconds=elapsed / max(done, 1) * (epochs - epoch - 1),
        elapsed_seconds=elapsed,
        **named,
        components=term_values(train, term_keys),
        val_components=term_values(val, term_keys),
        weights=dict(weights),
        nonfinite_steps=int(train.get("nonfinite", 0)),
        balancer={k: v for k, v in train.items() if k.startswith(("ratio_", "ema_norm_"))},
        metrics=update_metrics(train),
    )
