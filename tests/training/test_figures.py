"""What a run's figures say: a vocoder run's history marks the seed's VAE fields it never computed as NaN (not
0.0), and still loads in the seed's reader; the update panel of losses.png never gets a log axis (scores take
any sign); TensorBoard's tags are described in the events themselves."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from distill_core.training.metrics import EpochMetrics, MetricsHistory
from distill_core.training.plots import UPDATE_PANEL, axis_scale, draw, term_curves


@dataclasses.dataclass
class SeedEpoch:  # the seed's record, as its reader builds it (Cls(**entry)); tests/seed has the whole reader
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


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_vocoder_history_leaves_the_seeds_vae_fields_unmeasured(tmp_path):
    from distill_core.training.run import DemoSettings
    from distill_core.training.tensorboard import epoch_scalars, step_scalars
    from distill_core.training.vocoder import VocoderConfig
    from distill_core.training.vocoder_run import VocoderTraining, run_vocoder

    tiny = VocoderTraining(
        vocoder=VocoderConfig(n_fft=256, hop=64, mel_bins=32, channels=32, upsample_rates=(4, 4, 4)),
        segment=2048,
        val_segments=2,
    )
    settings = DemoSettings(name="voc", out=tmp_path, epochs=1, clips=4, batch_size=2, tensorboard=False)
    run = run_vocoder(settings, progress=False, training=tiny)
    written = json.loads((run / "history.json").read_text())
    epoch, step = written["epoch_metrics"][0], written["step_metrics"][0]
    never = ("val_recon_loss", "val_kl_loss", "kl_divergence", "val_stft_loss", "val_mag_recon_loss")
    assert all(math.isnan(epoch[k]) for k in never), epoch
    assert all(math.isnan(step[k]) for k in ("recon_loss", "kl_loss", "kl_weight", "stft_loss")), step
    assert math.isfinite(epoch["val_loss"]) and math.isfinite(step["train_loss"])
    assert SeedEpoch(**epoch).val_loss == epoch["val_loss"]  # the seed's reader still loads it

    history = MetricsHistory.load(run / "history.json")
    assert list(term_curves(history)) == ["mel_loss"]  # no empty stft or kl panels from the NaNs
    assert "kl_divergence" not in epoch_scalars(history.epochs[0])
    assert set(step_scalars(history.steps[0])) >= {"step/mel", "step/total"}
    assert "step/kl_weight" not in step_scalars(history.steps[0])


def test_only_the_fields_whose_output_is_missing_are_marked():
    from distill_core.seed.metrics import StepMetrics
    from distill_core.training.loop import _mark_unmeasured

    step = StepMetrics(0, 0, 1, 1.0, 0.5, 0.2, 0.01, 1e-3, 0.1)
    every = {"total_loss", "recon_loss", "kl_loss", "stft_loss", "mag_recon_loss", "if_recon_loss"}
    assert _mark_unmeasured(step, every, {"kl": 0.01}, math.nan) == step
    marked = _mark_unmeasured(step, {"total_loss"}, {}, math.nan)
    assert math.isnan(marked.recon_loss) and math.isnan(marked.kl_weight) and marked.train_loss == 1.0


@pytest.mark.parametrize(
    "title,values,scale",
    [
        (UPDATE_PANEL, [0.5, -0.3, 0.2], ("linear", {})),  # scores of both signs, within one decade
        (UPDATE_PANEL, [0.001, 0.5, 2.0], ("symlog", {"linthresh": 0.001})),  # spans decades: never log here
        (UPDATE_PANEL, [-40.0, 0.02, 1.0], ("symlog", {"linthresh": 0.01})),
        ("kl_loss", [0.01, 5.0, 30.0], ("log", {})),  # positive and spanning decades: log, as before
        ("sisdr_loss", [-30.0, -0.1, 2.0], ("symlog", {"linthresh": 0.1})),  # a negative term value stays shown
        ("stft_loss", [1.0, math.nan, 2.0], ("linear", {})),
    ],
)
def test_each_panel_gets_an_axis_that_shows_every_value(title, values, scale):
    assert axis_scale(title, values) == scale


def test_the_drawn_update_panel_is_not_logarithmic():
    def epoch(i: int) -> EpochMetrics:
        return EpochMetrics(
            i, 3, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1e-3, 0.0, 1.0,
            metrics={"adversarial_real_score": 0.9 - i, "adversarial_fake_score": 0.001 * 10**i},
        )  # fmt: skip

    fig = draw({"run": MetricsHistory(epochs=[epoch(i) for i in range(3)])})
    (panel,) = [ax for ax in fig.axes if ax.get_title() == UPDATE_PANEL]
    assert panel.get_yscale() == "symlog"
    low, high = panel.get_ylim()
    assert low < -1.0 < 0.9 < high  # the negative real score is on the axis


@pytest.mark.slow
def test_tensorboard_describes_its_tags(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from distill_core.training.tensorboard import TAGS, TensorBoardLogger

    logger = TensorBoardLogger(tmp_path)
    logger.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    text = acc.Tensors("tags/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "update/&lt;term&gt;_real_score" in text or "update/<term>_real_score" in text
    assert "mean logit" in TAGS["update/<term>_real_score"] and "model's output" in TAGS["update/<term>_fake_score"]
    assert "stateful terms weighed 0" in TAGS["total/val"]
