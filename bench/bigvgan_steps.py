"""The `bigvgan_v2` preset's D step and G step (MPD + MS-SB-CQTD) against BigVGAN-v2's own code on the same shapes:
time and peak memory as ratios. run.py's `bigvgan` section calls `bench_bigvgan(device, reps, shape, width)`.

BigVGAN's side is its train.py batch loop as it runs it (bigvgan 2.4.1: discriminators.py, loss.py): the D step
``mpd(y, y_g_hat.detach())`` and ``mrd(...)`` with ``discriminator_loss`` each, backward, ``clip_grad_norm_`` of
MPD and of the CQTD apart at 500, AdamW's step, the per-step ExponentialLR; the G step ``mpd(y, y_g_hat)`` and
``mrd(y, y_g_hat)``, ``feature_loss`` and ``generator_loss`` each, and backward (which also fills D's gradients,
as in train.py). Ours is Adversarial.update and Adversarial.generator_loss with the same weights. The mel term is
left out on both sides (it is benchmarked in section 2). nnAudio builds BigVGAN's CQT kernels; torchaudio's
Resample is its own Python (bench/adversarial.py's stand-ins, via the tests' disc_anchors).
"""

from __future__ import annotations

import copy
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from adversarial import TESTS, interleaved_steps
from peak import cuda_peak_mib, step_peak_mib

HERE = Path(__file__).resolve().parent
SHAPE = (1, 1, 16384)  # run.py's --bigvgan-shape default: a quarter of a BigVGAN-v2 training segment
CASES = ("ours_d", "bigvgan_d", "ours_g", "bigvgan_g")


def anchors_missing() -> str | None:
    """Why BigVGAN's code cannot be imported here, or None."""
    sys.path.insert(0, str(TESTS))
    from disc_anchors import ANCHORS

    if not (ANCHORS / "bigvgan").is_dir() or not (ANCHORS / "nnAudio").is_dir():
        return f"bigvgan or nnAudio is not installed in {ANCHORS}: run `make anchors`"
    return None


def pair(width: float):
    """BigVGAN's MPD and MS-SB-CQTD and our Adversarial (preset bigvgan_v2) with the same weights; ``width``
    multiplies both discriminators' channels (MPD's discriminator_channel_mult, the CQTD's filters)."""
    sys.path.insert(0, str(TESTS))
    from cqtd_anchors import BIGVGAN_V2_44K, ours_name, weights
    from disc_anchors import anchor
    from disc_weights import load_anchor, load_state
    from distill_discriminators import Adversarial, AdversarialConfig

    env, disc = anchor("bigvgan.env"), anchor("bigvgan.discriminators")
    filters = round(128 * width)
    h = env.AttrDict({**BIGVGAN_V2_44K, "discriminator_channel_mult": width, "cqtd_filters": filters})
    mpd, mrd = disc.MultiPeriodDiscriminator(h), disc.MultiScaleSubbandCQTDiscriminator(copy.deepcopy(h))
    ours = Adversarial(
        AdversarialConfig(
            preset="bigvgan_v2",
            discriminators=[
                {"kind": "mpd", "options": {"width": width}},
                {"kind": "cqtd", "options": {"filters": filters}},
            ],
        )
    )
    load_anchor(ours.discriminators[0].discriminators, mpd.discriminators)
    load_state(ours.discriminators[1], weights(mrd), ours_name)
    return h, mpd, mrd, ours


def cases(
    device: torch.device, shape=SHAPE, width: float = 1.0, only: str | None = None
) -> dict[str, Callable[[], None]]:
    """The step functions: ours and BigVGAN's D step and G step (``only``: just one)."""
    h, mpd, mrd, ours = pair(width)
    from disc_anchors import anchor  # on sys.path once pair() has run

    losses = anchor("bigvgan.loss")
    mpd, mrd, ours = mpd.to(device), mrd.to(device), ours.to(device)
    optim_d = torch.optim.AdamW(
        itertools.chain(mrd.parameters(), mpd.parameters()), h.learning_rate, betas=[h.adam_b1, h.adam_b2]
    )
    scheduler_d = torch.optim.lr_scheduler.ExponentialLR(optim_d, gamma=h.lr_decay)
    g = torch.Generator().manual_seed(0)
    y = torch.randn(*shape, generator=g).to(device)
    fake0 = torch.randn(*shape, generator=g).to(device)

    def bigvgan_d() -> None:
        y_g_hat = fake0.clone().requires_grad_(True)
        optim_d.zero_grad()
        y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
        loss_disc_f, _, _ = losses.discriminator_loss(y_df_hat_r, y_df_hat_g)
        y_ds_hat_r, y_ds_hat_g, _, _ = mrd(y, y_g_hat.detach())
        loss_disc_s, _, _ = losses.discriminator_loss(y_ds_hat_r, y_ds_hat_g)
        (loss_disc_s + loss_disc_f).backward()
        torch.nn.utils.clip_grad_norm_(mpd.parameters(), h.clip_grad_norm)
        torch.nn.utils.clip_grad_norm_(mrd.parameters(), h.clip_grad_norm)
        optim_d.step()
        scheduler_d.step()

    def bigvgan_g() -> None:
        y_g_hat = fake0.clone().requires_grad_(True)
        _, y_df_hat_g, fmap_f_r, fmap_f_g = mpd(y, y_g_hat)
        loss_fm_f, (loss_gen_f, _) = losses.feature_loss(fmap_f_r, fmap_f_g), losses.generator_loss(y_df_hat_g)
        _, y_ds_hat_g, fmap_s_r, fmap_s_g = mrd(y, y_g_hat)
        loss_fm_s, (loss_gen_s, _) = losses.feature_loss(fmap_s_r, fmap_s_g), losses.generator_loss(y_ds_hat_g)
        (loss_gen_s + loss_gen_f + loss_fm_s + loss_fm_f).backward()

    def ours_d() -> None:
        ours.update(fake0.clone().requires_grad_(True), y)

    def ours_g() -> None:
        ours.generator_loss(fake0.clone().requires_grad_(True), y).backward()

    fns = {"ours_d": ours_d, "bigvgan_d": bigvgan_d, "ours_g": ours_g, "bigvgan_g": bigvgan_g}
    return {only: fns[only]} if only is not None else fns


def peak(name: str, device: torch.device, shape: tuple[int, ...], width: float) -> float:
    """MiB of one step after a first one, over the built models (bench/peak.py: the allocator's peak, or a fresh
    process's on CPU). D's gradients count whenever a side holds them (BigVGAN frees them at its next zero_grad,
    ours right after its step)."""
    if device.type == "cuda":
        return cuda_peak_mib(cases(device, shape, width, only=name)[name], over_built=True)
    return step_peak_mib(str(HERE), "bigvgan_steps", f'torch.device("cpu"), {tuple(shape)!r}, {width!r}', name)


def bench_bigvgan(device: torch.device, reps: int = 3, shape: tuple[int, ...] = SHAPE, width: float = 1.0) -> dict:
    """Each step's time, interleaved after a warm-up round (ratios of the fastest repetitions, medians beside),
    then each step's peak memory (one fresh process per measurement on CPU)."""
    best, med, cpu_med, wall = interleaved_steps(cases(device, shape, width), reps, device)
    mem = {k: peak(k, device, shape, width) for k in CASES}
    ratio = lambda a, b, d: d[a] / max(d[b], 1e-12)  # noqa: E731
    return {
        "shape": list(shape),
        "width": width,
        "reps": reps,
        "ms": {k: v * 1e3 for k, v in best.items()},
        "median_ms": {k: v * 1e3 for k, v in med.items()},
        "ms_all": wall,
        "peak_mib": mem,
        **{f"{s}_step_time_ratio": ratio(f"ours_{s}", f"bigvgan_{s}", best) for s in ("d", "g")},
        **{f"{s}_step_median_time_ratio": ratio(f"ours_{s}", f"bigvgan_{s}", med) for s in ("d", "g")},
        **{f"{s}_step_cpu_time_ratio": ratio(f"ours_{s}", f"bigvgan_{s}", cpu_med) for s in ("d", "g")},
        **{f"{s}_step_memory_ratio": ratio(f"ours_{s}", f"bigvgan_{s}", mem) for s in ("d", "g")},
    }
