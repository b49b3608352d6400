"""Run by tests/test_balancer_ddp.py: balanced steps as one rank of a gloo group, or alone on the full batch."""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist

from distill_core.balancer import BalancerConfig, GradientBalancer

GLOBAL_BATCH = 8
WEIGHTS = {"l1": 1.0, "mse": 2.0, "loud": 1.0, "off": 0.0}


class TinyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(5, 8)
        self.head = torch.nn.Linear(8, 6)
        self.stats = torch.nn.Linear(8, 4)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return self.head(h).view(-1, 2, 3), self.stats(h)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world", type=int, default=1)
    parser.add_argument("--store", default="")
    parser.add_argument("--per-item", choices=["true", "false"], required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    distributed = args.world > 1
    if distributed:
        dist.init_process_group("gloo", init_method=f"file://{args.store}", rank=args.rank, world_size=args.world)
    torch.manual_seed(0)
    steps = [(torch.randn(GLOBAL_BATCH, 5), torch.randn(GLOBAL_BATCH, 2, 3), torch.randn(GLOBAL_BATCH, 2, 3))
             for _ in range(3)]
    model = TinyModel()
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    shard = slice(args.rank * GLOBAL_BATCH // args.world, (args.rank + 1) * GLOBAL_BATCH // args.world)
    config = BalancerConfig(enabled=True, ema_decay=0.8, per_batch_item=args.per_item == "true")
    balancer = GradientBalancer(config, list(WEIGHTS))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    grads, logs = [], []
    poison = torch.zeros(len(steps), GLOBAL_BATCH)
    poison[-1, GLOBAL_BATCH - 2] = torch.nan  # last step: mse is NaN on the second rank's shard only
    for (x, target, other), bad in zip(steps, poison):  # every term is a mean over the (local) examples
        x, target, other, bad = x[shard], target[shard], other[shard], bad[shard]
        opt.zero_grad()
        y, mu = model(x)
        values = {"l1": (y - target).abs().mean(), "mse": (y - target).pow(2).mean() + bad.mean(),
                  "loud": 100 * (y - other).abs().mean(), "off": y.sum()}
        kl = 0.5 * mu.pow(2).sum(1).mean()
        logs.append(balancer.backward(values, WEIGHTS, y, 0.3 * kl))
        grads.append({name.removeprefix("module."): p.grad.clone() for name, p in model.named_parameters()})
        opt.step()
    torch.save({"grads": grads, "logs": logs, "balancer": balancer.state_dict()}, args.out)
    if distributed:
        dist.barrier()  # both ranks done before teardown: a rank leaving mid-teardown can abort the other
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
