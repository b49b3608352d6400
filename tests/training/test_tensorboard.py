"""TensorBoard events of a demo run, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'distill-core[train]')")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from distill_core.training.metrics import MetricsHistory  # noqa: E402
from distill_core.training.run import DemoSettings, run_demo  # noqa: E402

SIZE = {"audio": 0, "images": 0, "scalars": 0, "tensors": 0}  # keep every event, not a reservoir sample


def read_events(run):
    events = sorted(run.glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(run), size_guidance=SIZE)
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb")
    settings = DemoSettings(name="tb", out=out, epochs=2, clips=12, batch_size=4, samples=2, seed=3)
    return run_demo(settings, progress=False)


def test_scalars_hold_every_term_train_and_val_per_epoch(run):
    acc = read_events(run)
    tags = set(acc.Tags()["scalars"])
    history = MetricsHistory.load(run / "history.json")
    per_epoch = {
        "total/train",
        "total/val",
        "nonfinite_steps",
        "kl_divergence",
        "learning_rate",
        "val/stft",
        "val/mag_recon",
        "val/if_recon",
        "val/kl",
    }
    assert per_epoch <= tags
    for tag in per_epoch:
        assert [e.step for e in acc.Scalars(tag)] == [1, 2], tag
    assert [e.value for e in acc.Scalars("total/val")] == pytest.approx([e.val_loss for e in history.epochs])
    assert [e.value for e in acc.Scalars("val/stft")] == pytest.approx([e.val_stft_loss for e in history.epochs])
    # per-step scalars at the existing log points only: every 2nd step and the last of each epoch (3 steps)
    steps = [e.step for e in acc.Scalars("step/total")]
    assert steps == [2, 3, 5, 6]
    assert {"step/stft", "step/kl", "step/kl_weight", "step/nonfinite"} <= tags
    if any(getattr(e, "components", None) for e in history.epochs):  # train values of every term, once logged
        assert {"train/stft", "train/kl"} <= tags
    if any(getattr(e, "weights", None) for e in history.epochs):
        assert {"weight/stft", "weight/kl"} <= tags
    assert all(math.isfinite(e.value) for e in acc.Scalars("total/train"))


def test_samples_as_audio_and_spectrogram_images_each_epoch(run):
    acc = read_events(run)
    audio, images = acc.Tags()["audio"], acc.Tags()["images"]
    assert sorted(audio) == [
        "sample_00/original",
        "sample_00/reconstruction",
        "sample_01/original",
        "sample_01/reconstruction",
    ]
    assert sorted(images) == [
        "sample_00/original_spectrogram",
        "sample_00/reconstruction_spectrogram",
        "sample_01/original_spectrogram",
        "sample_01/reconstruction_spectrogram",
    ]
    clip = acc.Audio("sample_00/reconstruction")
    assert [a.step for a in clip] == [1, 2] and clip[0].sample_rate == 16000
    assert clip[0].encoded_audio_string[:4] == b"RIFF" and clip[0].length_frames == 8064
    image = acc.Images("sample_01/original_spectrogram")[1]
    assert (image.height, image.width) == (256, 64) and image.encoded_image_string[:4] == b"\x89PNG"


def test_config_text_and_hparams(run):
    acc = read_events(run)
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "[terms.stft]" in text and "fft_sizes" in text
    plugin = acc.summary_metadata["_hparams_/session_start_info"].plugin_data
    assert plugin.plugin_name == "hparams"
    from tensorboard.plugins.hparams import plugin_data_pb2

    info = plugin_data_pb2.HParamsPluginData.FromString(plugin.content).session_start_info
    assert info.hparams["epochs"].number_value == 2 and info.hparams["batch_size"].number_value == 4
    assert info.hparams["weight/stft"].number_value == 1.0
    assert "linear_warmup" in info.hparams["weight/kl"].string_value


def test_no_tensorboard_writes_no_events(tmp_path):
    settings = DemoSettings(name="quiet", out=tmp_path, epochs=1, clips=8, batch_size=4, tensorboard=False)
    run = run_demo(settings, progress=False)
    assert (run / "history.json").is_file() and not list(run.glob("events.out.tfevents.*"))
