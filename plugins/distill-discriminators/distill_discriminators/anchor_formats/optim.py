"""D's optimizer and schedule between an anchor's file and ours.

A torch optimizer's state is keyed by position: the ``i``-th parameter of its groups, in the order the anchor
handed them over (DAC ``discriminator.parameters()``; HiFi-GAN ``chain(msd, mpd)``; BigVGAN ``chain(mrd, mpd)``;
audiocraft ``adversary.parameters()``; Vocos two groups, ``[mpd]`` and ``[mrd]``). That order is rebuilt here by
name: section by section as the anchor chains them, each section's parameters in module order (sub-discriminator
``n``, then layer by layer, as ``parameters()`` yields them), each name mapped to ours; the state at each
position moves to our parameter's position. A state whose tensors' shapes are not its parameter's is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..adversarial import Adversarial, StateMismatch
from .layouts import Format
from .mapping import Slot

ADAM_STATE = {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
# settings that travel with the state; the rest (fused, foreach, decoupled_weight_decay ...) are each class's own
SETTINGS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "initial_lr")
WHERE = {
    "dac": "optimizer.pth beside weights.pth",
    "hifigan": "'optim_d'",
    "bigvgan": "'optim_d'",
    "audiocraft": "AdversarialLoss's 'optimizer'",
    "vocos": "'optimizer_states'",
}


def anchor_order(fmt: Format, slots: list[Slot]) -> list[list[Slot]]:
    """The anchor optimizer's parameters, group by group, in its order."""
    params = [s for s in slots if s.param]
    return [
        [
            s
            for section in group
            for s in sorted((s for s in params if s.section == section), key=lambda s: (s.n, s.position))
        ]
        for group in fmt.groups
    ]


def settings(group: Mapping[str, Any]) -> dict[str, Any]:
    """A param group's settings that carry over (betas as a tuple)."""
    out = {k: group[k] for k in SETTINGS if k in group}
    if "betas" in out:
        out["betas"] = tuple(out["betas"])
    return out


def read_optimizer(adv: Adversarial, fmt: Format, slots: list[Slot], saved: Any, what: str) -> dict[str, Any]:
    """The anchor's D optimizer state as ours: each parameter's state moved to our position, the settings of its
    first group (lr as last scheduled, betas, weight decay) over ours."""
    groups = saved.get("param_groups") if isinstance(saved, Mapping) else None
    state = saved.get("state") if isinstance(saved, Mapping) else None
    order = anchor_order(fmt, slots)
    if (
        not isinstance(groups, list)
        or not isinstance(state, Mapping)
        or not all(isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in groups)
    ):
        raise StateMismatch(f"{what}: its D optimizer ({WHERE[fmt.name]}) is not a torch optimizer's state_dict()")
    sizes, expected = [len(g["params"]) for g in groups], [len(g) for g in order]
    if sizes != expected:
        raise StateMismatch(
            f"{what}: its D optimizer has parameter groups of {sizes} parameters, where the weights give {expected}; "
            f"it is not the optimizer of these weights"
        )
    ours = [name for name, _ in adv.discriminators.named_parameters()]
    params = dict(adv.discriminators.named_parameters())
    moved: dict[int, dict[str, Any]] = {}
    for group, slots_ in zip(groups, order):
        for index, slot in zip(group["params"], slots_):
            entry = state.get(index)
            if entry is None:
                continue  # a parameter that never had a gradient
            if not isinstance(entry, Mapping) or not set(entry) <= ADAM_STATE:
                keys = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
                raise StateMismatch(
                    f"{what}: its D optimizer's state {keys} is not Adam's or AdamW's ({sorted(ADAM_STATE)})"
                )
            p = params[slot.ours]
            for key, value in entry.items():
                if key != "step" and (not isinstance(value, torch.Tensor) or value.shape != p.shape):
                    got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise StateMismatch(
                        f"{what}: its D optimizer's {key} at position {index} has shape {got}, where its parameter "
                        f"{slot.keys[0]} has {list(p.shape)}; the state does not line up with the weights"
                    )
            step = entry.get("step", 0)
            moved[ours.index(slot.ours)] = {
                **{k: v.to(p.dtype) for k, v in entry.items() if k != "step"},
                "step": torch.as_tensor(float(step), dtype=torch.float32),
            }
    mine = adv.optimizer.state_dict()["param_groups"][0]
    group = {**{k: v for k, v in mine.items() if k != "params"}, **settings(groups[0]), "params": mine["params"]}
    return {"state": moved, "param_groups": [group]}


def write_optimizer(adv: Adversarial, fmt: Format, slots: list[Slot]) -> dict[str, Any]:
    """Our D optimizer's state as the anchor's: its groups, its order, the settings torch's Adam and AdamW share
    (with ``initial_lr``, which an ExponentialLR resumed at an epoch reads)."""
    mine = adv.optimizer.state_dict()
    ours = [name for name, _ in adv.discriminators.named_parameters()]
    base = settings(mine["param_groups"][0])
    base.setdefault("initial_lr", base.get("lr"))
    state: dict[int, dict[str, Any]] = {}
    groups: list[dict[str, Any]] = []
    position = 0
    for slots_ in anchor_order(fmt, slots):
        indices = []
        for slot in slots_:
            entry = mine["state"].get(ours.index(slot.ours))
            if entry is not None:
                state[position] = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in entry.items()}
            indices.append(position)
            position += 1
        groups.append({**base, "params": indices})
    return {"state": state, "param_groups": groups}


def anchor_schedule(
    fmt: Format, saved: Mapping[str, Any] | None, epoch: int | None, steps: int | None, interval: str
) -> tuple[str, int] | None:
    """The anchor's D schedule as (kind, steps taken): DAC's ExponentialLR and Vocos's LambdaLR from their saved
    states; HiFi-GAN's per-epoch ExponentialLR from the epoch (train.py rebuilds it from that); BigVGAN's from the
    epoch (v1) or, where ours steps per batch as BigVGAN-v2's train.py does, from ``steps`` (its do_ file is saved
    after that many scheduler steps, the optimizer holding the decayed rate)."""
    if saved is not None and isinstance(saved.get("last_epoch"), int):
        return ("exponential" if "gamma" in saved else "lambda"), int(saved["last_epoch"])
    if fmt.name == "bigvgan" and interval == "step" and steps is not None:
        return "exponential", int(steps)
    if fmt.name in ("hifigan", "bigvgan") and epoch is not None:
        return "exponential", int(epoch)
    return None


def read_schedule(
    adv: Adversarial,
    fmt: Format,
    saved: Mapping[str, Any] | None,
    epoch: int | None,
    what: str,
    steps: int | None,
) -> dict[str, Any] | None:
    """Our scheduler's state continuing the anchor's schedule (its steps taken), or None where there is none;
    a schedule of another kind than ours is refused, naming both."""
    interval = adv.settings.scheduler.interval
    theirs = anchor_schedule(fmt, saved, epoch, steps, interval)
    ours = adv.scheduler
    if theirs is None or ours is None:
        if theirs is not None and ours is None and theirs[1] > 0:
            raise StateMismatch(
                f"{what}: its D learning rate follows a schedule ({theirs[0]}, {theirs[1]} steps taken) and this "
                f"config has none: set scheduler, or init = 'weights_only'"
            )
        return None
    kind = "exponential" if isinstance(ours, torch.optim.lr_scheduler.ExponentialLR) else "lambda"
    wanted = "epoch" if fmt.name == "hifigan" else interval if fmt.name == "bigvgan" else "step"
    if kind != theirs[0] or interval != wanted:
        name = adv.settings.scheduler.name
        raise StateMismatch(
            f"{what}: its D schedule is {'an ExponentialLR' if theirs[0] == 'exponential' else 'a LambdaLR (cosine)'} "
            f"stepped per {wanted}, this config's scheduler is {name!r} per {interval}: set scheduler to the "
            f"anchor's (its preset has it), or init = 'weights_only'"
        )
    state = ours.state_dict()
    base = state["base_lrs"][0]
    if saved is not None and isinstance(saved.get("base_lrs"), list) and saved["base_lrs"]:
        base = saved["base_lrs"][0]
    steps = theirs[1]
    return {**state, "last_epoch": steps, "_step_count": steps + 1, "base_lrs": [base]}


def write_schedule(adv: Adversarial, fmt: Format) -> dict[str, Any] | None:
    """Our scheduler's state as the anchor saves its own (DAC's ExponentialLR, Vocos's LambdaLR, one entry per
    param group), or None where the anchor keeps none or ours is of another kind."""
    ours = adv.scheduler
    if ours is None or fmt.name not in ("dac", "vocos"):
        return None
    exponential = isinstance(ours, torch.optim.lr_scheduler.ExponentialLR)
    if exponential != (fmt.name == "dac"):
        return None
    state = dict(ours.state_dict())
    groups = len(fmt.groups)
    for key in ("base_lrs", "_last_lr"):
        if key in state:
            state[key] = list(state[key][:1]) * groups
    if "lr_lambdas" in state:
        state["lr_lambdas"] = [None] * groups  # Vocos's lambdas are closures, saved as None
    return state
