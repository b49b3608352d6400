"""The seed's StepMetrics and EpochMetrics are dataclasses: ``dataclasses.asdict``, ``fields`` and ``replace`` work on
them as on the seed's, and the history's file format does not change (issue 36, item 21)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from distill_core.training.metrics import SEED_EPOCH_FIELDS, SEED_STEP_FIELDS, EpochMetrics, MetricsHistory, StepMetrics


def a_step() -> StepMetrics:
    return StepMetrics(
        0,
        1,
        7,
        1.5,
        0.5,
        0.1,
        0.01,
        1e-3,
        0.02,
        stft_loss=0.4,
        components={"stft_loss": 0.4},
        nonfinite_steps=1,
        metrics={"adv_disc": 0.3},
    )


def an_epoch() -> EpochMetrics:
    return EpochMetrics(
        0,
        2,
        1.2,
        1.3,
        0.4,
        0.1,
        0.2,
        0.08,
        1e-3,
        1.0,
        2.0,
        val_stft_loss=0.5,
        components={"stft_loss": 0.45},
        val_components={"stft_loss": 0.5},
        weights={"stft": 1.0},
        balancer={"ratio_stft": 1.0},
        nonfinite_steps=1,
        metrics={"adv_disc": 0.3},
    )


# The file a history of one step and one epoch is written as (format 2): the seed's fields in the seed's two lists,
# everything else under "distill". Whatever the records are built with, this text must not change.
FILE = {
    "format": 2,
    "step_metrics": [
        {
            "epoch": 0,
            "step": 1,
            "total_steps": 7,
            "train_loss": 1.5,
            "recon_loss": 0.5,
            "kl_loss": 0.1,
            "kl_weight": 0.01,
            "learning_rate": 0.001,
            "step_time_s": 0.02,
            "stft_loss": 0.4,
            "mag_recon_loss": 0.0,
            "if_recon_loss": 0.0,
        }
    ],
    "epoch_metrics": [
        {
            "epoch": 0,
            "total_epochs": 2,
            "train_loss": 1.2,
            "val_loss": 1.3,
            "val_recon_loss": 0.4,
            "val_kl_loss": 0.1,
            "kl_divergence": 0.2,
            "overfitting_gap": 0.08,
            "learning_rate": 0.001,
            "eta_seconds": 1.0,
            "elapsed_seconds": 2.0,
            "val_stft_loss": 0.5,
            "val_mag_recon_loss": 0.0,
            "val_if_recon_loss": 0.0,
        }
    ],
    "distill": {
        "steps": [{"components": {"stft_loss": 0.4}, "nonfinite_steps": 1, "metrics": {"adv_disc": 0.3}}],
        "epochs": [
            {
                "components": {"stft_loss": 0.45},
                "val_components": {"stft_loss": 0.5},
                "weights": {"stft": 1.0},
                "balancer": {"ratio_stft": 1.0},
                "nonfinite_steps": 1,
                "metrics": {"adv_disc": 0.3},
            }
        ],
        "segments": [],
    },
}


def test_the_history_file_format_is_unchanged(tmp_path):
    history = MetricsHistory([a_step()], [an_epoch()])
    assert history.to_dict() == FILE
    path = history.save(tmp_path / "history.json")
    assert json.loads(path.read_text()) == FILE
    again = MetricsHistory.load(path)
    assert again.steps == [a_step()] and again.epochs == [an_epoch()]
    assert SEED_STEP_FIELDS == tuple(FILE["step_metrics"][0]) and SEED_EPOCH_FIELDS == tuple(FILE["epoch_metrics"][0])


@pytest.mark.parametrize("record", [a_step, an_epoch], ids=["StepMetrics", "EpochMetrics"])
def test_asdict_fields_and_replace_work_as_on_the_seeds(record):
    value = record()
    assert dataclasses.is_dataclass(value)
    names = [f.name for f in dataclasses.fields(value)]
    seed = SEED_STEP_FIELDS if isinstance(value, StepMetrics) else SEED_EPOCH_FIELDS
    assert tuple(names[: len(seed)]) == seed  # the seed's fields first, in its order
    as_dict = dataclasses.asdict(value)
    assert list(as_dict) == names and as_dict["components"] == value.components
    assert as_dict["components"] is not value.components  # asdict copies, as on the seed's
    changed = dataclasses.replace(value, train_loss=9.0)
    assert changed.train_loss == 9.0 and type(changed) is type(value)
    assert dataclasses.replace(changed, train_loss=value.train_loss) == value
    assert type(value)(**as_dict) == value  # the seed's own round trip


def test_a_history_of_replaced_records_writes_the_same_file(tmp_path):
    history = MetricsHistory([dataclasses.replace(a_step())], [dataclasses.replace(an_epoch())])
    assert history.to_dict() == FILE
