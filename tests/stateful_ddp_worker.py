"""Run by tests/engine/test_stateful_ddp.py: three training steps with the adversarial term, as one rank of a gloo group
(half the global batch) or alone on the whole batch; saves D's and the generator's weights."""

from __future__ import annotations

import argparse

import gloo_worker
import torch

from distill_core import CombinedLoss, load_config
from distill_core.engine.passes import train_pass
from distill_core.training.ddp import broadcast_loss_state, prepare_loss

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
    },
}
GLOBAL_BATCH, STEPS = 4, 3


class WaveAdapter:
    def __call__(self, model, inputs, reads):
        return {"recon": model(inputs), "target": inputs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--broadcast-only",
        action="store_true",
        help="broadcast D but leave its gradients per rank (shows what averaging them does)",
    )
    args = gloo_worker.join(parser)
    torch.manual_seed(args.rank)  # each rank builds another D: prepare_loss must hand every rank rank 0's
    loss = CombinedLoss(load_config(CONFIG))
    torch.manual_seed(0)
    waves = 0.3 * torch.randn(STEPS, GLOBAL_BATCH, 1, 2048)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(1, 4, 9, padding=4), torch.nn.Tanh(), torch.nn.Conv1d(4, 1, 9, padding=4)
    )
    if args.distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    if args.broadcast_only:
        broadcast_loss_state(loss)
    else:
        prepare_loss(loss)
    shard = gloo_worker.shard(args, GLOBAL_BATCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    means = train_pass(model, [step[shard] for step in waves], optimizer, loss, WaveAdapter(), clip_norm=None)
    d = {k: v for k, v in loss.state_dict().items() if isinstance(v, torch.Tensor)}
    g = {k.removeprefix("module."): v for k, v in model.state_dict().items()}
    torch.save({"d": d, "g": g, "means": dict(means)}, args.out)
    gloo_worker.leave(args)


if __name__ == "__main__":
    main()
