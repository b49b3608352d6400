"""distill-loss import-seed: a checkpoint the seed's train() wrote (tests/data/seed_run) becomes our run folder.

The oracle for what the seed saved is the seed's own classes unpickling the file the ordinary way, in a
subprocess that runs tests/data/make_seed_checkpoint.py's definitions (never in this process).
"""

from __future__ import annotations

import json
import os
import pickletools
import shutil
import signal
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader, TensorDataset

from distill_core import CombinedLoss, load_config
from distill_core.cli.main import main
from distill_core.training.checkpoint import CheckpointError, load_checkpoint, load_training_state
from distill_core.training.metrics import SEED_EPOCH_FIELDS, SEED_STEP_FIELDS, MetricsHistory
from distill_core.training.seed_import import import_seed
from distill_core.training.seed_pickle import SeedImportError, read_seed_checkpoint

DATA = Path(__file__).parents[1] / "data"
RUN = DATA / "seed_run"
SCRIPT = DATA / "make_seed_checkpoint.py"
LAST, FIRST = RUN / "checkpoints" / "checkpoint_epoch0002.pt", RUN / "checkpoints" / "checkpoint_epoch0001.pt"

# Unpickles with the seed's own classes (the script's) and re-saves as plain data: the reference.
ORACLE = """
import runpy, sys, torch
seed = runpy.run_path(sys.argv[1], run_name="seed_definitions")
state = torch.load(sys.argv[2], weights_only=False)
assert type(state["training_config"]["preset"]) is seed["OverfittingPreset"]
state["training_config"]["preset"] = state["training_config"]["preset"].value
torch.save(state, sys.argv[3])
"""


def seed_reference(checkpoint: Path, out: Path) -> dict:
    subprocess.run([sys.executable, "-c", ORACLE, str(SCRIPT), str(checkpoint), str(out)], check=True)
    return torch.load(out, weights_only=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    return seed_reference(LAST, tmp_path_factory.mktemp("oracle") / "last.pt")


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "run"
    import_seed(RUN, out, lr=1e-3)
    return out


@pytest.fixture(autouse=True)
def keep_sigterm():
    """train installs a SIGTERM handler; in-process runs must not leave it behind."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def pickled_globals(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    return {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def run_cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    err = result.stderr
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_the_golden_file_is_a_seed_pickle_that_our_checkpoint_loader_refuses():
    assert [p.name for p in sorted((RUN / "checkpoints").glob("*.pt"))] == [FIRST.name, LAST.name]
    assert pickled_globals(LAST) == {
        "distill.training.config OverfittingPreset",
        "collections OrderedDict",
        "torch FloatStorage",
        "torch._utils _rebuild_tensor_v2",
    }
    with pytest.raises(CheckpointError, match="OverfittingPreset"):
        load_checkpoint(LAST)
    meta = json.loads(LAST.with_suffix(".pt.meta.json").read_text())
    assert set(meta) == {"epoch", "train_loss", "val_loss"} and meta["epoch"] == 2


def test_the_reader_gives_what_the_seed_classes_unpickle(reference):
    ours = read_seed_checkpoint(LAST)
    assert list(ours) == list(reference)
    assert ours["training_config"] == reference["training_config"]  # the enum member as its value
    assert ours["training_config"]["preset"] == "conservative"
    assert ours["metrics_history"] == reference["metrics_history"]
    assert ours["scheduler_state_dict"] == reference["scheduler_state_dict"]


def test_weights_and_optimizer_state_are_carried_bit_for_bit(imported, reference):
    state = load_training_state(imported / "last.pt")
    assert state["epoch"] == reference["epoch"] == 2
    seed_model = reference["model_state_dict"]
    assert list(state["model"]) == list(seed_model)
    for key, tensor in seed_model.items():
        ours = state["model"][key]
        assert ours.dtype == tensor.dtype and torch.equal(ours, tensor), key
    seed_opt = reference["optimizer_state_dict"]
    assert state["optimizer"]["state"].keys() == seed_opt["state"].keys()
    for index, entries in seed_opt["state"].items():
        for name, value in entries.items():
            assert torch.equal(state["optimizer"]["state"][index][name], value), (index, name)
    seed_group = seed_opt["param_groups"][0]
    assert seed_group["lr"] == 0.0  # the seed's cosine schedule ran to its end
    assert state["optimizer"]["param_groups"][0] == {**seed_group, "lr": 1e-3}  # what --lr asked for
    kept = state["seed"]
    assert kept["scheduler_state_dict"] == reference["scheduler_state_dict"] and kept["kl_weight"] == 0.02
    assert kept["training_config"]["regularization"]["weight_decay"] == 0.05


def test_every_epoch_of_the_seed_history_is_carried(imported, reference):
    seed_epochs = reference["metrics_history"]["epoch_metrics"]
    assert len(seed_epochs) == 3 and reference["metrics_history"]["step_metrics"] == []  # train() logs no steps
    written = json.loads((imported / "history.json").read_text())
    assert written["epoch_metrics"] == seed_epochs and list(seed_epochs[0]) == list(SEED_EPOCH_FIELDS)
    history = MetricsHistory.load(imported / "history.json")
    assert [e.val_stft_loss for e in history.epochs] == [e["val_stft_loss"] for e in seed_epochs]
    assert history.get_best_epoch() == min(seed_epochs, key=lambda e: e["val_loss"])["epoch"]
    assert MetricsHistory.from_dict(load_checkpoint(imported / "last.pt")["history"]) == history


def test_every_logged_step_is_carried_too(tmp_path, reference):
    """A seed history with steps (the seed's to_dict, tests/data/seed_history_v2.json) in a seed checkpoint."""
    seed_history = json.loads((DATA / "seed_history_v2.json").read_text())
    assert seed_history["step_metrics"] and list(seed_history["step_metrics"][0]) == list(SEED_STEP_FIELDS)
    path = tmp_path / "checkpoints" / "checkpoint_epoch0001.pt"
    path.parent.mkdir()
    torch.save({**reference, "metrics_history": seed_history, "epoch": 1}, path)
    import_seed(tmp_path, tmp_path / "ours")
    written = json.loads((tmp_path / "ours" / "history.json").read_text())
    assert written["step_metrics"] == seed_history["step_metrics"]
    assert written["epoch_metrics"] == seed_history["epoch_metrics"]


def test_the_written_config_gives_the_seed_configs_loss(imported, reference):
    from distill_core.models import compute_combined_loss, get_kl_weight
    from distill_core.training.config import KLLossConfig, LossConfig, ReconLossConfig, STFTLossConfig

    seed = reference["training_config"]["loss"]
    assert seed["stft"]["fft_sizes"] == (16, 32, 64) and seed["kl"] == {
        "weight_max": 0.02,
        "warmup_fraction": 0.5,
        "free_bits": 0.2,
    }
    seed_config = LossConfig(
        stft=STFTLossConfig(**seed["stft"]),
        reconstruction=ReconLossConfig(**seed["reconstruction"]),
        kl=KLLossConfig(**seed["kl"]),
    )
    ours = CombinedLoss(load_config(imported / "config.toml"))
    g = torch.Generator().manual_seed(3)
    recon, target = torch.rand(2, 2, 32, 16, generator=g), torch.rand(2, 2, 32, 16, generator=g)
    mu, logvar = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    total_epochs = reference["training_config"]["max_epochs"]
    for epoch in range(total_epochs):
        kl_weight = get_kl_weight(epoch, total_epochs, seed["kl"]["warmup_fraction"], seed["kl"]["weight_max"])
        want = compute_combined_loss(recon, target, mu, logvar, seed_config, kl_weight=kl_weight)
        got = ours(
            {"recon": recon, "target": target, "mu": mu, "logvar": logvar}, epoch=epoch, total_epochs=total_epochs
        )
        assert set(want) - {"nonfinite"} <= set(got)
        for key in ("total_loss", "stft_loss", "mag_recon_loss", "if_recon_loss", "kl_loss", "recon_loss"):
            torch.testing.assert_close(got[key], want[key], rtol=1e-7, atol=1e-7, msg=f"epoch {epoch} {key}")
    assert get_kl_weight(2, 3, 0.5, 0.02) == 0.02  # the last epoch weighs KL fully: the comparison covers it


def test_the_imported_run_resumes_for_one_more_epoch(tmp_path, imported):
    from distill_core.training.audio import synthetic_corpus
    from distill_core.training.loop import train
    from distill_core.training.model import SpectrogramVAE
    from distill_core.training.spectrogram import SpectrogramConfig, to_spectrogram

    run = tmp_path / "run"
    shutil.copytree(imported, run)
    before = load_training_state(run / "last.pt")
    spec = SpectrogramConfig(sample_rate=8000, n_fft=64, hop=16, frames=16)  # the golden run's sizes
    specs = to_spectrogram(synthetic_corpus(6, spec.samples, spec.sample_rate, seed=1), spec)
    model = SpectrogramVAE(spec.bins, spec.frames, latent_dim=4, width=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # posterior collapse warnings of a toy
        history = train(
            model,
            DataLoader(TensorDataset(specs[2:]), batch_size=4),
            DataLoader(TensorDataset(specs[:2]), batch_size=2),
            load_config(run / "config.toml"),
            epochs=4,
            checkpoint_dir=run,
            resume_from=run / "last.pt",
        )
    seed_history = MetricsHistory.load(imported / "history.json")
    assert [e.epoch for e in history.epochs] == [0, 1, 2, 3]
    assert history.epochs[:3] == seed_history.epochs
    after = load_training_state(run / "last.pt")
    assert after["epoch"] == 3
    assert not torch.equal(after["model"]["to_stats.weight"], before["model"]["to_stats.weight"])
    steps = [s["step"] for s in after["optimizer"]["state"].values()]
    assert all(s > b["step"] for s, b in zip(steps, before["optimizer"]["state"].values()))


def test_a_foreign_global_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    state = read_seed_checkpoint(LAST)
    bad = tmp_path / "checkpoints" / "checkpoint_epoch0002.pt"
    bad.parent.mkdir()
    torch.save({**state, "latent_analysis": Payload()}, bad)  # a valid seed checkpoint plus one foreign object
    assert f"{os.system.__module__} system" in pickled_globals(bad)
    result = run_cli("import-seed", tmp_path, "--out", tmp_path / "ours")
    one_line_error(result, str(bad), f"{os.system.__module__}.system", "nothing in it was run")
    assert not marker.exists() and not (tmp_path / "ours").exists()
    with pytest.raises(SeedImportError, match="system"):
        read_seed_checkpoint(bad)
    assert not marker.exists()


def test_a_pickled_model_object_is_refused_by_its_class_name(tmp_path):
    """The seed saved state dicts; a checkpoint holding a whole module object names its class and stops."""
    path = tmp_path / "checkpoint_epoch0001.pt"
    torch.save({**read_seed_checkpoint(LAST), "model": torch.nn.Linear(2, 2)}, path)
    one_line_error(run_cli("import-seed", path, "--out", tmp_path / "ours"), "torch.nn.modules.linear.Linear")


def test_a_seed_object_holding_itself_is_one_line(tmp_path, monkeypatch):
    import types

    for name in ("distill", "distill.training", "distill.training.config"):  # only while pickling
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    module = sys.modules["distill.training.config"]
    module.LossConfig = type("LossConfig", (), {"__module__": "distill.training.config"})
    loop = module.LossConfig()
    loop.stft = loop
    path = tmp_path / "checkpoint_epoch0001.pt"
    torch.save({"epoch": 0, "loop": loop}, path)
    monkeypatch.undo()  # the reader finds no seed module to import, nor needs one
    with pytest.raises(SeedImportError, match="holding itself"):
        read_seed_checkpoint(path)


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p.write_bytes(b"these are not the seed's bytes"), "not a readable torch.save file"),
        (lambda p: p.write_bytes(LAST.read_bytes()[:50_000]), "not a readable torch.save file"),
        (lambda p: torch.save({"weights": torch.zeros(2)}, p), "not a seed checkpoint: no 'epoch' entry"),
        (lambda p: torch.save([1, 2], p), "holds a list"),
        (
            lambda p: torch.save({**read_seed_checkpoint(LAST), "training_config": {"latent_dim": 4}}, p),
            "training_config has no 'loss' section",
        ),
    ],
)
def test_a_corrupt_or_unknown_file_is_one_line_and_exit_2(tmp_path, make, needle):
    path = tmp_path / "checkpoint_epoch0001.pt"
    make(path)
    one_line_error(run_cli("import-seed", path, "--out", tmp_path / "ours"), str(path), needle)
    assert not (tmp_path / "ours").exists()


def test_an_older_torch_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    one_line_error(run_cli("import-seed", RUN, "--out", tmp_path / "ours"), "needs torch >= 2.6", "2.5.1+cpu")
    assert not (tmp_path / "ours").exists()


def test_import_seed_has_help():
    result = run_cli("import-seed", "--help")
    assert result.exit_code == 0 and "--overwrite" in result.output and "--lr" in result.output


def test_a_folder_without_seed_checkpoints_is_one_line(tmp_path):
    one_line_error(run_cli("import-seed", tmp_path, "--out", tmp_path / "ours"), str(tmp_path), "no seed checkpoint")
    one_line_error(run_cli("import-seed", tmp_path / "missing"), "no such seed run folder")


def test_an_existing_run_is_never_replaced_without_overwrite(tmp_path, imported):
    out = tmp_path / "ours"
    shutil.copytree(imported, out)
    saved = {p.name: p.read_bytes() for p in out.iterdir()}
    one_line_error(run_cli("import-seed", RUN, "--out", out), str(out), "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == saved
    result = run_cli("import-seed", RUN, "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert load_training_state(out / "last.pt")["optimizer"]["param_groups"][0]["lr"] == 0.0  # no --lr this time
    assert "learning rate 0 (where the seed's schedule ended" in result.output


@pytest.fixture(scope="module")
def demo_sized_seed_run(tmp_path_factory) -> Path:
    """A seed run whose model is the demo's VAE at --mel-bins 16, pickling the seed's dataclasses themselves."""
    out = tmp_path_factory.mktemp("seed_demo")
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--clips",
            "4",
            "--sample-rate",
            "16000",
            "--n-fft",
            "512",
            "--hop",
            "128",
            "--frames",
            "64",
            "--mel-bins",
            "16",
            "--latent-dim",
            "32",
            "--width",
            "16",
            "--pickle-configs",
        ],
        check=True,
        capture_output=True,
    )
    return out


@pytest.mark.slow
@pytest.mark.e2e
def test_a_checkpoint_pickling_the_seed_dataclasses_imports_the_same(demo_sized_seed_run, imported, tmp_path):
    checkpoint = demo_sized_seed_run / "checkpoints" / "checkpoint_epoch0001.pt"
    names = pickled_globals(checkpoint)
    assert {
        "distill.training.config TrainingConfig",
        "distill.training.config LossConfig",
        "distill.training.config KLLossConfig",
        "distill.training.metrics MetricsHistory",
        "distill.training.metrics EpochMetrics",
        "distill.audio.spectrogram SpectrogramConfig",
    } <= names
    state = read_seed_checkpoint(checkpoint)
    assert state["training_config"]["loss"] == read_seed_checkpoint(LAST)["training_config"]["loss"]
    assert [e["epoch"] for e in state["metrics_history"]["epoch_metrics"]] == [0, 1]
    import_seed(demo_sized_seed_run, tmp_path / "ours")
    assert load_config(tmp_path / "ours" / "config.toml") == load_config(imported / "config.toml")


@pytest.mark.slow
@pytest.mark.e2e
def test_distill_loss_train_resume_continues_an_imported_run(demo_sized_seed_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("import-seed", demo_sized_seed_run, "--lr", "1e-3")
    out = Path("runs") / demo_sized_seed_run.name  # the default --out
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"continue it with: distill-loss train {out / 'config.toml'} --out runs --name {out.name}" in result.output
    imported_model = load_training_state(out / "last.pt")["model"]
    result = run_cli(
        "train",
        out / "config.toml",
        "--out",
        "runs",
        "--name",
        out.name,
        "--resume",
        out / "last.pt",
        "--epochs",
        "3",
        "--clips",
        "4",
        "--batch-size",
        "2",
        "--mel-bins",
        "16",
        "--no-progress",
        "--no-tensorboard",
    )
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    history = MetricsHistory.load(out / "history.json")
    assert [e.epoch for e in history.epochs] == [0, 1, 2]
    state = load_training_state(out / "last.pt")
    assert state["epoch"] == 2
    assert not torch.equal(state["model"]["to_stats.weight"], imported_model["to_stats.weight"])
