"""The vocoder through train(), `distill-loss train --model vocoder` and `distill-loss compare`."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import tomllib
import torch
from click.testing import CliRunner

from distill_core import CombinedLoss, load_config
from distill_core.cli.main import main
from distill_core.engine.passes import train_pass
from distill_core.training.audio import synthetic_corpus, wav_corpus, write_wav
from distill_core.training.audio_metrics import evaluate
from distill_core.training.compare import REFERENCE, compare_runs
from distill_core.training.demo_models import MODELS, model_of_run
from distill_core.training.metrics import MetricsHistory
from distill_core.training.run import DemoSettings, run_demo
from distill_core.training.segments import WavSegments, load_waves
from distill_core.training.spectrogram import SpectrogramConfig
from distill_core.training.vocoder import Vocoder, VocoderAdapter, VocoderConfig, load_vocoder, vocode
from distill_core.training.vocoder_run import VocoderTraining, run_vocoder

TINY = VocoderTraining(
    vocoder=VocoderConfig(n_fft=256, hop=64, mel_bins=32, channels=32, upsample_rates=(4, 4, 4)),
    segment=2048,
    val_segments=2,
)
WAVES = {"recon": "recon_wave", "target": "target_wave"}


def _wavs(folder: Path, count: int, seed: int, samples: int = 20000) -> Path:
    for i, clip in enumerate(synthetic_corpus(count, samples, 16000, seed=seed)):
        write_wav(folder / f"{i}.wav", clip, 16000)
    return folder


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cli_trains_the_vocoder_and_compare_scores_it(tmp_path):
    """The smoke test: two steps of the default vocoder through the CLI, then compare on held-out WAVs."""
    data, held = _wavs(tmp_path / "train", 2, seed=0), _wavs(tmp_path / "held", 2, seed=7)
    result = _cli(
        "train",
        "--model",
        "vocoder",
        "--data",
        data,
        "--out",
        tmp_path / "runs",
        "--name",
        "voc",
        "--epochs",
        1,
        "--clips",
        4,
        "--batch-size",
        2,
        "--no-progress",
        "--no-tensorboard",
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "voc"
    assert f"data: 2 .wav files in {data} (2.5 s at 16000 Hz); each epoch trains on 4 random segments" in result.output
    assert {"vocoder.json", "best.pt", "last.pt", "config.toml", "history.json", "lock.json", "losses.png"} <= {
        p.name for p in run.iterdir()
    }
    assert len(list((run / "samples").glob("*_reconstruction.wav"))) == 3
    history = MetricsHistory.load(run / "history.json")
    assert len(history.epochs) == 1 and math.isfinite(history.epochs[0].val_loss)
    assert set(history.epochs[0].components) == {"mel_loss"}
    terms = tomllib.loads((run / "config.toml").read_text())["terms"]
    assert list(terms) == ["mel"] and terms["mel"]["inputs"] == WAVES and terms["mel"]["sample_rate"] == 16000
    assert model_of_run(run) == "vocoder"

    result = _cli("compare", run, "--data", held, "--clips", 3, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "# Reconstruction of 2 held-out clips of 1.00 s" in md and REFERENCE not in md  # no VAE, no round trip
    assert "| voc | `" in md and "| mel (1.0) |" in md
    clips = wav_corpus(held, 16000, 16000, max_clips=3)  # the oracle: the run's best.pt vocoding the same clips
    expected = evaluate(clips, vocode(load_vocoder(run), clips), 16000)
    row = next(line for line in md.splitlines() if line.startswith("| voc | ") and "±" in line)
    lsd = float(row.split("|")[2].split("±")[0])
    assert lsd == pytest.approx(sum(expected["LSD (dB)"]) / 2, abs=1e-3)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A one-epoch demo VAE run and a one-epoch tiny vocoder run on the synthetic corpus."""
    root = tmp_path_factory.mktemp("mixed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        vae = run_demo(
            DemoSettings(name="vae", out=root, epochs=1, clips=8, batch_size=4, tensorboard=False), progress=False
        )
        voc = run_vocoder(
            DemoSettings(name="voc", out=root, epochs=1, clips=4, batch_size=2, tensorboard=False),
            progress=False,
            training=TINY,
        )
    finally:
        torch.set_num_threads(threads)
    return root, vae, voc, _wavs(root / "held", 2, seed=3)


def test_vae_and_vocoder_runs_compare_on_the_vae_clip_length(mixed):
    root, vae, voc, held = mixed
    comparison = compare_runs([vae, voc], held, max_clips=4)
    samples = SpectrogramConfig().samples
    assert comparison.seconds == samples / 16000 and comparison.clips == 4
    assert list(comparison.scores) == [REFERENCE, "vae", "voc"]
    clips = wav_corpus(held, samples, 16000, max_clips=4)
    expected = evaluate(clips, vocode(load_vocoder(voc), clips), 16000)
    for metric, values in expected.items():
        assert comparison.scores["voc"][metric] == pytest.approx(values, nan_ok=True), metric
    result = _cli("compare", vae, voc, "--data", held, "--out", root / "cmp", "--clips", 4)
    assert result.exit_code == 0, result.output
    assert "Paired differences over clips" in (root / "cmp" / "compare.md").read_text()


def test_seconds_sets_the_vocoder_clips_and_is_refused_beside_a_vae(mixed):
    root, vae, voc, held = mixed
    assert compare_runs([voc], held, max_clips=2, seconds=0.25).seconds == 0.25
    result = _cli("compare", vae, voc, "--data", held, "--out", root / "no", "--seconds", 0.25)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: --seconds 0.25: {vae} is a VAE run, whose model takes clips of 8064 "
        "samples (0.504 s) only; --seconds sets the clip length of comparisons of "
        "vocoder runs alone"
    )


def test_a_vocoder_checkpoint_without_its_settings_is_named(mixed, tmp_path):
    _, _, voc, held = mixed
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "best.pt").write_bytes((voc / "best.pt").read_bytes())
    result = _cli("compare", copy, "--data", held, "--out", tmp_path / "cmp")
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {copy / 'best.pt'}: holds vocoder weights, but {copy / 'vocoder.json'} "
        "(the vocoder's settings, written by distill-loss train --model vocoder) is "
        "missing"
    )


def test_a_folder_or_checkpoint_of_the_other_model_is_refused(mixed):
    root, vae, voc, _ = mixed
    before = {p.name: p.stat().st_mtime_ns for p in voc.iterdir()}
    result = _cli("train", "--out", root, "--name", "voc", "--overwrite", "--epochs", 1)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {voc}: holds a vocoder run (vocoder.json); --model vae does not "
        "write into it, even with --overwrite; choose another --name"
    )
    assert {p.name: p.stat().st_mtime_ns for p in voc.iterdir()} == before
    result = _cli("train", "--model", "vocoder", "--out", root, "--name", "vae", "--overwrite", "--epochs", 1)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {vae}: holds a vae run (spectrogram.json); --model vocoder does not "
        "write into it, even with --overwrite; choose another --name"
    )
    assert not (vae / "vocoder.json").exists()
    result = _cli("train", "--model", "vocoder", "--out", root, "--name", "new", "--resume", vae / "last.pt")
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: --resume {vae / 'last.pt'}: a checkpoint of a vae run; continue it with --model vae"
    )
    assert not (root / "new").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "wavenet"], "error: --model: 'wavenet' is not a demo model; expected one of vae, vocoder"),
        (
            ["--model", "vocoder", "--mel-bins", "64"],
            "error: --mel-bins 64: applies to --model vae only (the vocoder reads 80 log-mel bands of its own)",
        ),
    ],
)
def test_bad_model_settings_are_one_line(tmp_path, args, message):
    result = _cli("train", *args, "--out", tmp_path / "runs")
    assert result.exit_code == 2 and result.output.strip() == message
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_folder_is_one_line_and_writes_nothing(tmp_path):
    result = _cli("train", "--model", "vocoder", "--data", tmp_path / "nowhere", "--out", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'nowhere'}: no such folder of .wav files"
    assert not (tmp_path / "runs").exists()


def test_the_vae_recipe_is_refused_naming_the_keys_the_vocoder_gives(tmp_path):
    config = tmp_path / "vae.toml"
    config.write_text("[terms.kl]\nweight = 0.01\n")  # the VAE recipe, merged in: recon, target, mu, logvar
    result = _cli("train", config, "--model", "vocoder", "--out", tmp_path / "runs")
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.startswith(f"error: invalid loss config in {config}: terms.") and "\n" not in line
    assert (
        "reads batch key 'mu', which distill-loss train --model vocoder does not provide (it provides "
        "recon_wave, target_wave, mel)" in line
    )
    assert line.endswith(
        "recipe: the VAE recipe's terms are in the config (the default recipe, merged in when a file "
        'names none); a vocoder config starts with recipe = "none"'
    )
    assert not (tmp_path / "runs").exists()


def test_a_users_terms_on_the_batch_keys_train(tmp_path):
    config = tmp_path / "wave.toml"
    config.write_text(
        'recipe = "none"\n[terms.wave_l1]\ninputs = { recon = "recon_wave", target = "target_wave" }\n'
        '[terms.stft]\ninput = "waveform"\nfft_sizes = [128, 256]\nhop_sizes = [32, 64]\n'
        'win_lengths = [128, 256]\ninputs = { recon = "recon_wave", target = "target_wave" }\n'
        "weight = 0.5\n"
    )
    settings = DemoSettings(
        name="wave",
        out=tmp_path,
        epochs=2,
        clips=4,
        batch_size=2,
        config=config,
        samples=2,
        data=_wavs(tmp_path / "data", 2, seed=1),
    )
    run = run_vocoder(settings, progress=False, training=TINY)
    history = MetricsHistory.load(run / "history.json")
    assert [set(e.components) for e in history.epochs] == [{"wave_l1_loss", "stft_loss"}] * 2
    for e in history.epochs:
        assert e.train_loss == pytest.approx(e.components["wave_l1_loss"] + 0.5 * e.components["stft_loss"])
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'distill-core[train]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"audio": 0, "images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    assert sorted(events.Tags()["audio"]) == [
        f"sample_0{i}/{kind}" for i in (0, 1) for kind in ("original", "reconstruction")
    ]
    clip = events.Audio("sample_01/reconstruction")
    assert [a.step for a in clip] == [1, 2] and clip[0].length_frames == TINY.segment
    mel = events.Images("sample_00/original_spectrogram")[0]
    assert (mel.width, mel.height) == (TINY.segment // TINY.vocoder.hop, TINY.vocoder.mel_bins)
    assert {"train/wave_l1", "val/stft"} <= set(events.Tags()["scalars"])


def test_resuming_trains_to_the_same_weights(tmp_path):
    def settings(name: str, epochs: int, resume: Path | None = None) -> DemoSettings:
        return DemoSettings(
            name=name,
            out=tmp_path,
            epochs=epochs,
            clips=4,
            batch_size=2,
            seed=3,
            resume=resume,
            tensorboard=False,
            change_options=resume is not None,  # 1 epoch to 2: the run's run.json says 1
        )

    whole = run_vocoder(settings("whole", 2), progress=False, training=TINY)
    run_vocoder(settings("split", 1), progress=False, training=TINY)
    split = run_vocoder(settings("split", 2, tmp_path / "split" / "last.pt"), progress=False, training=TINY)
    a = torch.load(whole / "last.pt", weights_only=True)["model"]
    b = torch.load(split / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [[e.val_loss for e in MetricsHistory.load(run / "history.json").epochs] for run in (whole, split)]
    assert len(losses[0]) == 2 and losses[0] == losses[1]


def test_every_epoch_draws_fresh_segments(tmp_path):
    """The sampler draws new segment indices each epoch (from torch's RNG, which a checkpoint restores)."""
    from torch.utils.data import DataLoader, RandomSampler

    clips = list(synthetic_corpus(2, 4096, 16000, seed=0))
    data = WavSegments.of_waves(clips, 1024, count=1_000_000, seed=0)
    torch.manual_seed(0)
    loader = DataLoader(data, batch_size=4, sampler=RandomSampler(data, replacement=True, num_samples=4))
    first, second = next(iter(loader)), next(iter(loader))
    assert first.shape == (4, 1, 1024) and not torch.equal(first, second)


def test_segments_of_waves_equal_the_folder_ones(tmp_path):
    folder = _wavs(tmp_path, 3, seed=2, samples=5000)
    from_folder = WavSegments(folder, 1024, 16000, count=6, seed=4)
    in_memory = WavSegments.of_waves(load_waves(folder, 16000), 1024, count=6, seed=4)
    for i in range(6):
        assert torch.equal(from_folder[i], in_memory[i])
    with pytest.raises(ValueError, match=r"WavSegments: samples=0 and count=6; expected both >= 1"):
        WavSegments.of_waves(load_waves(folder, 16000), 0, count=6)


def test_the_adapter_trains_through_train_pass_without_a_per_step_host_sync(sync_counter):
    """A pass of three steps reads the host as often as a pass of one: only the pass's closing means do."""
    model = Vocoder(TINY.vocoder)
    loss = CombinedLoss(
        load_config(
            {
                "recipe": "none",
                "terms": {
                    "mel": {"sample_rate": 16000, "n_mels": [16, 32], "window_lengths": [64, 256], "inputs": WAVES}
                },
            }
        )
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    adapter = VocoderAdapter()
    assert adapter.provides() == ("recon_wave", "target_wave", "mel") and adapter.carries_gradient() == ("recon_wave",)
    waves = [0.1 * torch.randn(2, 1, 640) for _ in range(3)]
    train_pass(model, waves[:1], optimizer, loss, adapter)  # building and the first batch's checks may read the host
    counts = []
    for n in (1, 3):
        sync_counter.update({k: 0 for k in sync_counter})
        before = [p.detach().clone() for p in model.parameters()]
        means = train_pass(model, waves[:n], optimizer, loss, adapter)
        counts.append(sum(sync_counter.values()))
        assert means["nonfinite"] == 0 and math.isfinite(means["mel_loss"])
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))  # the pass stepped
    assert counts[0] == counts[1], counts


def test_the_registry_names_each_models_run_folder_marker():
    assert {name: m.marker for name, m in MODELS.items()} == {"vae": "spectrogram.json", "vocoder": "vocoder.json"}
    assert re.fullmatch(r"history\.json, .*vocoder\.json.*", MODELS["vocoder"].holds)


def test_check_reads_the_batch_keys_of_the_model_named(tmp_path):
    vocoder = tmp_path / "mel.toml"
    vocoder.write_text(
        'recipe = "none"\n[terms.mel]\nsample_rate = 16000\ninputs = { recon = "recon_wave", target = "target_wave" }\n'
    )
    result = _cli("check", vocoder, "--model", "vocoder")
    assert result.exit_code == 0 and result.output.startswith(f"# {vocoder}: valid")
    vae = tmp_path / "vae.toml"
    vae.write_text("")  # the VAE recipe
    assert _cli("check", vae).exit_code == 0
    result = _cli("check", vae, "--model", "vocoder")
    assert result.exit_code == 2
    assert "reads batch key 'mu', which distill-loss train --model vocoder does not provide" in result.output
    result = _cli("check", vae, "--model", "gan")
    assert result.exit_code == 2
    assert result.output.strip() == "error: --model: 'gan' is not a demo model; expected one of vae, vocoder"


def test_compare_scores_the_example_runs_as_the_example_does(tmp_path):
    """examples/compare_vocoder.py's run folders through compare_runs: the same scores as its evaluate_runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compare_vocoder", Path(__file__).parents[2] / "examples" / "compare_vocoder.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    corpus = tmp_path / "speech"
    _wavs(corpus / "train", 2, seed=0)
    held = _wavs(corpus / "held_out", 3, seed=1)
    runs = [
        script.train_recipe(name, script.RECIPES[name], corpus, tmp_path / "runs", 1, 0, 2, 2048, 1e-3, 1)
        for name in ("a_wave_l1", "c_mel")
    ]
    theirs = script.evaluate_runs(runs, held, tmp_path / "theirs", clip_seconds=0.5, max_clips=4)
    ours = compare_runs(runs, held, max_clips=4, seconds=0.5)
    assert (ours.clips, ours.seconds) == (theirs.clips, theirs.seconds) == (4, 0.5)
    assert ours.scores.keys() == theirs.scores.keys() == {"a_wave_l1", "c_mel"}
    for name, metrics in theirs.scores.items():
        for metric, values in metrics.items():
            # exact but for pystoi's ESTOI, which moves in the 14th digit from one call to the next
            assert ours.scores[name][metric] == pytest.approx(values, rel=1e-9, abs=1e-12, nan_ok=True), metric
