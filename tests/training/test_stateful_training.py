"""Training with a stateful term, the real ``adversarial`` term of distill-discriminators at a small width: the
update step runs before the generator's loss on training batches only, its state is in every checkpoint and a
resume equals a straight run bit for bit, its figures reach the history, the plot, TensorBoard and the console,
and the model's optimizer may not hold its parameters."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from distill_core import CombinedLoss, load_config
from distill_core.engine.passes import Accumulator, LossParameterError, check_optimizer, evaluate_pass, train_pass
from distill_core.training.loop import train
from distill_core.training.metrics import EpochMetrics, MetricsHistory
from distill_core.training.plots import UPDATE_PANEL, draw
from distill_core.training.progress import console_values, epoch_line
from distill_core.training.tensorboard import epoch_scalars, step_scalars

# DAC's setup (MPD + MRD, LSGAN, normalised input) with two periods and two resolutions, width 1/8
SMALL_D = [
    {"kind": "mpd", "options": {"periods": [2, 3], "always_pad": True, "normalize_input": True}},
    {"kind": "mrd", "options": {"fft_sizes": [256, 128], "padding": "dac", "normalize_input": True}},
]
CONFIG = {
    "recipe": "none",
    "terms": {"wave_l1": {}, "adversarial": {"preset": "dac", "width": 0.125, "discriminators": SMALL_D}},
}
FIGURES = {"adversarial_disc_loss", "adversarial_real_score", "adversarial_fake_score"}
STEPS_PER_EPOCH = 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class WaveAdapter:
    """A waveform generator's batch: its output and the clean signal it should reproduce."""

    def __call__(self, model: torch.nn.Module, inputs: torch.Tensor, reads: frozenset) -> dict[str, torch.Tensor]:
        return {"recon": model(inputs), "target": inputs}


def generator() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv1d(1, 4, 9, padding=4), torch.nn.Tanh(), torch.nn.Conv1d(4, 1, 9, padding=4)
    )


def loaders() -> tuple[DataLoader, DataLoader]:
    waves = 0.3 * torch.randn(6, 1, 4096, generator=torch.Generator().manual_seed(0))
    return (
        DataLoader(TensorDataset(waves[2:]), batch_size=2, shuffle=True),
        DataLoader(TensorDataset(waves[:2]), batch_size=2),
    )


class Stop(Exception):
    pass


def stop_after(epoch: int):
    def callback(metrics: Any) -> None:
        if isinstance(metrics, EpochMetrics) and metrics.epoch == epoch:
            raise Stop

    return callback


def run(folder: Path, epochs: int = 4, **kwargs: Any) -> MetricsHistory:
    train_loader, val_loader = loaders()
    return train(
        generator(),
        train_loader,
        val_loader,
        load_config(CONFIG),
        epochs=epochs,
        adapter=WaveAdapter(),
        checkpoint_dir=folder,
        log_interval=1,
        **kwargs,
    )


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two saved states differ: tensors bit for bit, nested tables and plain values by equality."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
        return [] if same else [path]
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(map(str, a.keys() ^ b.keys()))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def epoch_values(history: MetricsHistory) -> list[dict[str, Any]]:
    """Each epoch's figures, without its clock (elapsed, ETA)."""
    return [
        {
            "train": e.train_loss,
            "val": e.val_loss,
            "components": e.components,
            "val_components": e.val_components,
            "metrics": e.metrics,
            "nonfinite": e.nonfinite_steps,
        }
        for e in history.epochs
    ]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, MetricsHistory]:
    """Four epochs in one go: the reference every other run here is held to."""
    folder = tmp_path_factory.mktemp("straight")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield folder, run(folder)
    torch.set_num_threads(threads)


def test_a_resumed_run_equals_a_straight_run_bit_for_bit(straight, tmp_path):
    folder, history = straight
    torch.manual_seed(0)
    with pytest.raises(Stop):
        run(tmp_path, callbacks=[stop_after(1)])
    cut = torch.load(tmp_path / "last.pt", weights_only=True)
    assert cut["epoch"] == 1 and int(cut["loss"]["terms.adversarial.adversarial.updates"]) == 2 * STEPS_PER_EPOCH
    torch.manual_seed(12345)  # another D and generator to start from: the checkpoint must replace both
    resumed = run(tmp_path, resume_from=tmp_path / "last.pt")
    ours, theirs = (
        torch.load(tmp_path / "last.pt", weights_only=True),
        torch.load(folder / "last.pt", weights_only=True),
    )
    assert differences(ours["model"], theirs["model"]) == []
    assert differences(ours["loss"], theirs["loss"]) == []  # D's weights, its AdamW state, counters
    assert differences(ours["optimizer"], theirs["optimizer"]) == []
    assert epoch_values(resumed) == epoch_values(history)
    # the D step ran once per training batch and never in validation
    assert int(ours["loss"]["terms.adversarial.adversarial.updates"]) == 4 * STEPS_PER_EPOCH


def test_a_checkpoint_without_the_loss_state_still_resumes_from_the_built_state(straight, tmp_path):
    """Checkpoints written before the loss's state was saved hold none: they load, D starts as built (said in a
    warning), and the run then differs from the straight one, which shows what the saved state restores."""
    folder, history = straight
    torch.manual_seed(0)
    with pytest.raises(Stop):
        run(tmp_path, callbacks=[stop_after(1)])
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    del state["loss"]
    torch.save(state, tmp_path / "old.pt")
    with pytest.warns(RuntimeWarning, match=r"old.pt: the checkpoint holds no loss state .*'adversarial'"):
        resumed = run(tmp_path, resume_from=tmp_path / "old.pt")
    assert len(resumed.epochs) == 4 and epoch_values(resumed)[:2] == epoch_values(history)[:2]
    assert resumed.epochs[2].metrics != history.epochs[2].metrics


def test_update_figures_reach_the_history_plot_tensorboard_and_console(straight):
    folder, history = straight
    saved = MetricsHistory.load(folder / "history.json")
    assert saved == history
    for epoch in saved.epochs:
        assert set(epoch.metrics) == FIGURES and all(math.isfinite(v) for v in epoch.metrics.values())
        assert "wave_l1_loss" in epoch.components and not FIGURES & set(epoch.components)
        assert {k for k in epoch.components if k.startswith("adversarial")}  # the generator's side
        assert epoch.metrics["adversarial_disc_loss"] > 0
    assert all(set(step.metrics) == FIGURES for step in saved.steps)
    # validation's total leaves the stateful term out (its value moves with D), training's holds it
    assert all(e.val_loss == e.val_components["wave_l1_loss"] for e in saved.epochs)
    assert all(e.train_loss > e.components["wave_l1_loss"] + 1 for e in saved.epochs)
    # an LSGAN D learns: D's loss falls over the run and it scores real above fake
    first, last = saved.epochs[0].metrics, saved.epochs[-1].metrics
    assert last["adversarial_disc_loss"] < first["adversarial_disc_loss"]
    assert last["adversarial_real_score"] > last["adversarial_fake_score"]

    figure = draw({"run": saved})
    panels = {ax.get_title(): {line.get_label() for line in ax.get_lines()} for ax in figure.axes}
    assert panels[UPDATE_PANEL] == FIGURES

    scalars = epoch_scalars(saved.epochs[-1])
    assert {f"update/{k}" for k in FIGURES} <= scalars.keys()
    assert scalars["update/adversarial_disc_loss"] == last["adversarial_disc_loss"]
    assert {f"step_update/{k}" for k in FIGURES} <= step_scalars(saved.steps[-1]).keys()

    line = epoch_line(saved.epochs[-1])
    assert "update: adversarial_disc " in line and "adversarial_real_score" in line
    assert "adversarial_fake_score" in line
    assert {"wave_l1", "adversarial_disc", "adversarial_real_score"} <= console_values(saved.steps[-1]).keys()


def test_histories_written_before_update_figures_still_load_and_plot():
    data = Path(__file__).parents[1] / "data"
    for name in ("history_v0.json", "history_v1_distill.json", "seed_history_v2.json"):
        old = MetricsHistory.load(data / name)
        assert old.epochs and all(e.metrics == {} for e in old.epochs) and all(s.metrics == {} for s in old.steps)
        assert UPDATE_PANEL not in {ax.get_title() for ax in draw({"old": old}).axes}


def test_an_optimizer_holding_a_loss_parameter_is_refused_naming_it(tmp_path):
    torch.manual_seed(0)
    model, loss = generator(), CombinedLoss(load_config(CONFIG))
    check_optimizer(torch.optim.Adam(model.parameters()), loss)  # the model's own: fine
    wrong = torch.optim.Adam([*model.parameters(), *loss.parameters()])
    with pytest.raises(
        LossParameterError,
        match=r"holds the loss's parameter 'loss\.terms\.adversarial\.adversarial"
        r"\.discriminators\.0\..*'; give the optimizer model\.parameters\(\) "
        r"only",
    ):
        check_optimizer(wrong, loss)
    train_loader, val_loader = loaders()
    with pytest.raises(LossParameterError, match="give the optimizer model.parameters"):
        train(
            model,
            train_loader,
            val_loader,
            loss,
            epochs=1,
            optimizer=wrong,
            adapter=WaveAdapter(),
            checkpoint_dir=tmp_path,
        )
    assert not (tmp_path / "last.pt").exists()


def test_validation_runs_the_loss_in_eval_mode_and_never_updates():
    torch.manual_seed(0)
    model, loss = generator(), CombinedLoss(load_config(CONFIG))
    modes: list[bool] = []
    loss.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    d_before = {k: v.clone() for k, v in loss.state_dict().items() if isinstance(v, torch.Tensor)}
    train_loader, val_loader = loaders()
    means = evaluate_pass(model, val_loader, loss, WaveAdapter())
    assert modes == [False] and loss.training  # eval inside, the caller's mode after
    assert not FIGURES & set(means) and "adversarial_disc_loss" not in means
    assert all(torch.equal(v, loss.state_dict()[k]) for k, v in d_before.items())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss.eval()  # a pass trains: it puts the loss back in train mode, so the D step runs
    means = train_pass(model, train_loader, optimizer, loss, WaveAdapter())
    assert modes[1:] == [True] * STEPS_PER_EPOCH and int(loss.terms["adversarial"].adversarial.updates) == 2
    assert means.metrics == FIGURES and FIGURES <= means.keys()


def test_the_training_step_makes_no_host_sync(sync_counter):
    """Update, loss, backward and the optimizer over three steps: the only sync is the epoch's one read."""
    torch.manual_seed(0)
    model, loss = generator(), CombinedLoss(load_config(CONFIG))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    waves = 0.3 * torch.randn(6, 1, 4096, generator=torch.Generator().manual_seed(0))
    batches = list(waves.split(2))  # a DataLoader draws its base seed with one .item() per epoch, on the CPU
    means = train_pass(model, batches, optimizer, loss, WaveAdapter())
    assert means.metrics == FIGURES
    assert sync_counter == {**{k: 0 for k in sync_counter}, "tolist": 1}


def test_a_figure_some_steps_leave_out_averages_over_the_steps_that_had_it():
    acc = Accumulator()
    acc.add({"total_loss": torch.tensor(1.0), "disc": torch.tensor(4.0)})
    acc.add({"total_loss": torch.tensor(3.0)})  # the update step skipped by its schedule
    acc.add({"total_loss": torch.tensor(5.0), "disc": torch.tensor(2.0), "nonfinite": torch.tensor(1.0)})
    assert acc.means() == {"total_loss": 3.0, "disc": 3.0, "nonfinite": 1}
    assert acc.count == 3


def test_an_accepted_config_change_keeps_each_part_of_the_loss_that_still_fits(tmp_path):
    """Resuming with a changed loss (new_segment): a changed L1 weight keeps D and its counters; a D of another
    architecture cannot take the saved weights and starts as built, named in a warning."""
    torch.manual_seed(0)
    with pytest.raises(Stop):
        run(tmp_path, callbacks=[stop_after(1)])
    train_loader, val_loader = loaders()
    reweighed = {**CONFIG, "terms": {**CONFIG["terms"], "wave_l1": {"weight": 2.0}}}
    train(
        generator(),
        train_loader,
        val_loader,
        load_config(reweighed),
        epochs=3,
        adapter=WaveAdapter(),
        checkpoint_dir=tmp_path,
        resume_from=tmp_path / "last.pt",
        new_segment="L1 doubled",
    )
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert int(state["loss"]["terms.adversarial.adversarial.updates"]) == 3 * STEPS_PER_EPOCH  # 4 saved + 2

    other_d = [{**SMALL_D[0], "options": {**SMALL_D[0]["options"], "periods": [2, 5]}}, SMALL_D[1]]
    rebuilt = {
        **CONFIG,
        "terms": {**CONFIG["terms"], "adversarial": {**CONFIG["terms"]["adversarial"], "discriminators": other_d}},
    }
    with pytest.warns(
        RuntimeWarning,
        match=r"these parts start from their built state: 'adversarial' "
        r"\(discriminators\[0\]\.options\.periods: \[2, 3\] -> \[2, 5\]\)$",
    ):
        train(
            generator(),
            train_loader,
            val_loader,
            load_config(rebuilt),
            epochs=4,
            adapter=WaveAdapter(),
            checkpoint_dir=tmp_path,
            resume_from=tmp_path / "last.pt",
            new_segment="another D",
        )
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert int(state["loss"]["terms.adversarial.adversarial.updates"]) == STEPS_PER_EPOCH


def test_a_per_epoch_schedule_of_a_stateful_term_steps_once_per_completed_training_epoch():
    """HiFi-GAN's D schedule steps once an epoch: train_pass calls the loss's end_epoch after a full pass only
    (not after a cancelled one, not in validation), so D's lr after two epochs is lr * gamma ** 2."""
    config = {
        "recipe": "none",
        "terms": {
            "wave_l1": {},
            "adversarial": {
                "preset": "dac",
                "width": 0.125,
                "discriminators": SMALL_D,
                "scheduler": {"name": "exponential", "gamma": 0.5, "interval": "epoch"},
            },
        },
    }
    loss = CombinedLoss(load_config(config))
    d_optimizer = loss.terms["adversarial"].adversarial.optimizer
    lr = d_optimizer.param_groups[0]["lr"]
    model = generator()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    train_loader, val_loader = loaders()
    for _ in range(2):
        train_pass(model, train_loader, optimizer, loss, WaveAdapter())
        evaluate_pass(model, val_loader, loss, WaveAdapter())
    assert d_optimizer.param_groups[0]["lr"] == pytest.approx(lr * 0.25)

    class Cancelled:
        def is_set(self) -> bool:
            return True

    train_pass(model, train_loader, optimizer, loss, WaveAdapter(), cancel_event=Cancelled())
    assert d_optimizer.param_groups[0]["lr"] == pytest.approx(lr * 0.25)  # an interrupted epoch steps nothing
