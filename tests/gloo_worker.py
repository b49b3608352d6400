"""What every DDP test worker does around its own steps: its arguments, one torch thread, joining a gloo group as
one rank (or running alone), its shard of the global batch, and an orderly teardown. Workers run as scripts, so
this module is found beside them."""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist


def join(parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse the worker's arguments (its own, added to ``parser``, and --rank/--world/--store/--out), use one torch
    thread, and join the gloo group when --world is over 1; ``args.distributed`` says whether it did."""
    parser = parser or argparse.ArgumentParser()
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world", type=int, default=1)
    parser.add_argument("--store", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.distributed = args.world > 1
    if args.distributed:
        dist.init_process_group("gloo", init_method=f"file://{args.store}", rank=args.rank, world_size=args.world)
    return args


def shard(args: argparse.Namespace, global_batch: int) -> slice:
    """This rank's rows of a global batch (all of them when alone)."""
    return slice(args.rank * global_batch // args.world, (args.rank + 1) * global_batch // args.world)


def leave(args: argparse.Namespace) -> None:
    """Leave the group once every rank is done: a rank leaving mid-teardown can abort the other."""
    if args.distributed:
        dist.barrier()
        dist.destroy_process_group()
