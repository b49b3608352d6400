"""Run by tests/engine/test_stateful_ddp.py: three training steps with the adversarial term and an EMA term (a
buffer its update step moves from the batch, declared ``mean``, and a count of examples seen, declared ``sum``),
as one rank of a gloo group (half the global batch) or alone on the whole batch; saves D's and the generator's
weights, the EMA term's state, the epoch's means and every reported window.

``--no-prepare``: skips prepare_loss and saves the message each of our loop and a plain loop stop with."""

from __future__ import annotations

import argparse
import contextlib

import attrs
import gloo_worker
import torch

from distill_core import CombinedLoss, LossTerm, Weight, get_registry, load_config
from distill_core.engine.passes import train_pass
from distill_core.loss.combined import DistributedSetupError
from distill_core.testing.kit import SYNC_METHODS
from distill_core.training.ddp import prepare_loss

SMALL_D = [
    {"kind": "mpd", "options": {"periods": [2, 3], "always_pad": True, "normalize_input": True}},
    {"kind": "mrd", "options": {"fft_sizes": [256, 128], "padding": "dac", "normalize_input": True}},
]
# AdamW's lr raised from DAC's 1e-4 so that three steps move D measurably
CONFIG = {
    "recipe": "none",
    "terms": {
        "wave_l1": {},
        "adversarial": {
            "preset": "dac",
            "width": 0.125,
            "discriminators": SMALL_D,
            "optimizer": {"name": "adamw", "lr": 1e-3},
        },
        "band_ema": {"weight": 0.1},
    },
}
GLOBAL_BATCH, STEPS = 4, 3


@attrs.define
class BandEMAConfig:
    weight: Weight = 1.0
    decay: float = 0.5


class BandEMA(LossTerm):
    """The target's energy in 4 frequency bands, as an EMA its update step moves (mean over the batch: linear in
    the examples, so the ranks' average is the global batch's); its loss weighs band errors by it."""

    name = "band_ema"
    config_class = BandEMAConfig
    requires = ("recon", "target")
    figures = ("energy",)
    state_sync = {"energy": "mean", "seen": "sum"}

    def __init__(self, config: BandEMAConfig) -> None:
        super().__init__(config)
        self.register_buffer("energy", torch.ones(4))
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64))

    @staticmethod
    def bands(x: torch.Tensor) -> torch.Tensor:
        power = torch.fft.rfft(x, dim=-1).abs().square()
        return torch.stack([band.mean() for band in power.chunk(4, dim=-1)])

    def forward(self, batch):
        return ((self.bands(batch["recon"]) - self.bands(batch["target"])).abs() / self.energy).mean()

    def update(self, batch):
        d = self.config.decay
        self.energy.mul_(d).add_((1 - d) * self.bands(batch["target"]))
        self.seen += batch["target"].shape[0]
        return {"energy": self.energy.mean()}


class WaveAdapter:
    def __call__(self, model, inputs, reads):
        return {"recon": model(inputs), "target": inputs}


@contextlib.contextmanager
def counting_syncs(counts: dict[str, int]):
    """Count the tensor methods that make the host wait for the device, inside the block."""
    originals = {m: getattr(torch.Tensor, m) for m in SYNC_METHODS}

    def counted(name):
        def call(self, *args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return originals[name](self, *args, **kwargs)

        return call

    for m in SYNC_METHODS:
        setattr(torch.Tensor, m, counted(m))
    try:
        yield
    finally:
        for m, original in originals.items():
            setattr(torch.Tensor, m, original)


def refusals(loss: CombinedLoss, model: torch.nn.Module, batches: list[torch.Tensor]) -> dict[str, str]:
    """The message our loop and a plain loop stop with when prepare_loss was not called."""
    said = {}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    try:
        train_pass(model, batches, optimizer, loss, WaveAdapter(), clip_norm=None)
    except DistributedSetupError as exc:
        said["train_pass"] = str(exc)
    try:  # a plain loop: update, loss, backward, step
        batch = {"recon": model(batches[0]), "target": batches[0]}
        loss.update(batch)
    except DistributedSetupError as exc:
        said["plain"] = str(exc)
    return said


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-prepare", action="store_true", help="leave prepare_loss out: the loss must refuse")
    args = gloo_worker.join(parser)
    get_registry().register_term(BandEMA)
    torch.manual_seed(args.rank)  # each rank builds another D: prepare_loss must hand every rank rank 0's
    loss = CombinedLoss(load_config(CONFIG))
    torch.manual_seed(0)
    waves = 0.3 * torch.randn(STEPS, GLOBAL_BATCH, 1, 2048)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(1, 4, 9, padding=4), torch.nn.Tanh(), torch.nn.Conv1d(4, 1, 9, padding=4)
    )
    shard = gloo_worker.shard(args, GLOBAL_BATCH)
    batches = [step[shard] for step in waves]
    if args.no_prepare:
        torch.save({"refused": refusals(loss, model, batches)}, args.out)
        gloo_worker.leave(args)
        return
    if args.distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    prepare_loss(loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    syncs: dict[str, int] = {}
    update = loss.update

    def counted_update(batch):  # the update step, the ranks' reduction of the declared state included
        with counting_syncs(syncs):
            return update(batch)

    loss.update = counted_update
    windows: list[dict[str, float]] = []
    means = train_pass(
        model,
        batches,
        optimizer,
        loss,
        WaveAdapter(),
        clip_norm=None,
        log_interval=1,
        report=lambda window: windows.append(dict(window.means)),
    )
    state = {k: v for k, v in loss.state_dict().items() if isinstance(v, torch.Tensor)}
    g = {k.removeprefix("module."): v for k, v in model.state_dict().items()}
    d = {k: v for k, v in state.items() if k.startswith("terms.adversarial.")}
    ema = {k.removeprefix("terms.band_ema."): v for k, v in state.items() if k.startswith("terms.band_ema.")}
    torch.save({"d": d, "g": g, "ema": ema, "means": dict(means), "windows": windows, "syncs": syncs}, args.out)
    gloo_worker.leave(args)


if __name__ == "__main__":
    main()
