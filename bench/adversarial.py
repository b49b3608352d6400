"""The `dac` preset's D step and G step (MPD + MRD) against DAC's own discriminator code on the same shapes, and
Adversarial.update against a hand-written D step around the same discriminators: median time and peak memory as
ratios. run.py's `adversarial` section calls `bench_adversarial(device, reps, shape)`.

DAC's side is dac/nn/loss.py's GANLoss as its scripts/train.py uses it: discriminator_loss, backward, clip 10,
AdamW step; then generator_loss (gen + 2 x feat) and backward, which also fills D's gradients. Ours is
Adversarial.update and Adversarial.generator_loss. Both discriminators hold the same weights. The hand-written
D step is what a user would write without the framework: the same discriminator modules and fused AdamW, one
forward over fake and real, the LSGAN loss inline, backward, clip, step, the schedule's step.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from peak import cuda_peak_mib, step_peak_mib

HERE = Path(__file__).resolve().parent
SHAPE = (4, 1, 44100)
PERIODS, FFT_SIZES = [2, 3, 5, 7, 11], [2048, 1024, 512]
TESTS = HERE.parent / "plugins" / "distill-discriminators" / "tests"
CASES = ("ours_d", "dac_d", "hand_d", "loss_d", "ours_g", "dac_g")


def anchors_missing() -> str | None:
    """Why DAC's code cannot be imported here, or None."""
    sys.path.insert(0, str(TESTS))
    from disc_anchors import ANCHORS

    return None if (ANCHORS / "dac").is_dir() else f"DAC is not installed in {ANCHORS}: run `make anchors`"


def pair(periods: list[int], fft_sizes: list[int]):
    """DAC's Discriminator and our Adversarial with the same weights."""
    sys.path.insert(0, str(TESTS))
    from disc_anchors import anchor
    from disc_weights import dac_unwrap, load_anchor
    from distill_discriminators import Adversarial, AdversarialConfig

    theirs = anchor("dac.model.discriminator").Discriminator(periods=periods, fft_sizes=fft_sizes)
    ours = Adversarial(
        AdversarialConfig(
            preset="dac",
            discriminators=[
                {"kind": "mpd", "options": {"periods": periods, "always_pad": True, "normalize_input": True}},
                {"kind": "mrd", "options": {"fft_sizes": fft_sizes, "padding": "dac", "normalize_input": True}},
            ],
        )
    )
    flat = torch.nn.ModuleList([*ours.discriminators[0].discriminators, *ours.discriminators[1].discriminators])
    load_anchor(flat, theirs.discriminators, dac_unwrap)
    return theirs, ours


def hand_written_d_step(ours, real: torch.Tensor, fake0: torch.Tensor) -> Callable[[], None]:
    """A D step written by hand around a copy of our discriminators: no framework in between."""
    discriminators = copy.deepcopy(ours.discriminators).requires_grad_(True)
    opt = torch.optim.AdamW(discriminators.parameters(), lr=1e-4, betas=(0.8, 0.99), fused=True)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, 0.999996)
    n = real.shape[0]

    def step() -> None:
        both = torch.cat([fake0.clone().requires_grad_(True).detach(), real])
        loss = 0.0
        for d in discriminators:
            for sub in d(both):
                loss = loss + (1 - sub.logits[n:]).pow(2).mean() + sub.logits[:n].pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(discriminators.parameters(), 10.0, foreach=True)
        opt.step()
        schedule.step()

    return step


def loss_update_step(ours, real: torch.Tensor, fake0: torch.Tensor) -> Callable[[], None]:
    """CombinedLoss.update around a copy of our Adversarial (D, optimizer, schedule): the D step as a training
    loop calls it, with the framework's batch mapping, detach, schedule and figure keys in between."""
    from distill_discriminators import Adversarial, AdversarialLoss

    from distill_core import CombinedLoss, LossConfig
    from distill_core.terms.base import LossTerm

    term = AdversarialLoss.__new__(AdversarialLoss)
    LossTerm.__init__(term, ours.config)
    term.adversarial = Adversarial(ours.config).to(real.device)
    term.adversarial.load_state_dict(ours.state_dict())  # the same weights (a deepcopy loses the fused flag)
    loss = CombinedLoss(LossConfig.of({"adversarial": ours.config}), prebuilt={"adversarial": term}).train()

    def step() -> None:
        loss.update({"recon": fake0.clone().requires_grad_(True), "target": real})

    return step


def cases(
    device: torch.device, periods: list[int], fft_sizes: list[int], shape=SHAPE, only: str | None = None
) -> dict[str, Callable[[], None]]:
    """The step functions: ours and DAC's D step and G step, and the hand-written D step (``only``: just one)."""
    theirs, ours = pair(periods, fft_sizes)
    theirs, ours = theirs.to(device), ours.to(device)
    signal = __import__("audiotools").AudioSignal
    gan = __import__("dac.nn.loss", fromlist=["GANLoss"]).GANLoss(theirs)
    opt = torch.optim.AdamW(theirs.parameters(), lr=1e-4, betas=(0.8, 0.99))
    g = torch.Generator().manual_seed(0)
    real = torch.randn(*shape, generator=g).to(device)
    fake0 = torch.randn(*shape, generator=g).to(device)

    def dac_d() -> None:
        fake = fake0.clone().requires_grad_(True)
        loss = gan.discriminator_loss(signal(fake, 44100), signal(real, 44100))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 10.0)
        opt.step()

    def dac_g() -> None:
        fake = fake0.clone().requires_grad_(True)
        gen, feat = gan.generator_loss(signal(fake, 44100), signal(real, 44100))
        (gen + 2.0 * feat).backward()

    def ours_d() -> None:
        ours.update(fake0.clone().requires_grad_(True), real)

    def ours_g() -> None:
        fake = fake0.clone().requires_grad_(True)
        ours.generator_loss(fake, real).backward()

    fns = {"ours_d": ours_d, "dac_d": dac_d, "ours_g": ours_g, "dac_g": dac_g}
    if only in (None, "hand_d"):
        fns["hand_d"] = hand_written_d_step(ours, real, fake0)
    if only in (None, "loss_d"):
        fns["loss_d"] = loss_update_step(ours, real, fake0)
    return {only: fns[only]} if only is not None else fns


def peak(name: str, device: torch.device, periods: list[int], ffts: list[int], shape: tuple[int, ...]) -> float:
    """MiB of one step after a first one, over the built models (bench/peak.py: the allocator's peak, or a fresh
    process's on CPU). D's gradients count whenever a side holds them (DAC's loop frees them at its next
    zero_grad, ours right after its step; DAC's G step adds to them, ours makes none)."""
    if device.type == "cuda":
        return cuda_peak_mib(cases(device, periods, ffts, shape, only=name)[name], over_built=True)
    return step_peak_mib(
        str(HERE), "adversarial", f'torch.device("cpu"), {periods!r}, {ffts!r}, {tuple(shape)!r}', name
    )


def interleaved_steps(
    fns: dict[str, Callable[[], None]], reps: int, device: torch.device
) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, list[float]]]:
    """Each step ``reps`` times, interleaved, after one warm-up round: the fastest and median wall time, the median
    process CPU time (seconds), and every repetition's wall time (ms)."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(1 + reps):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t, c = time.perf_counter(), time.process_time()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
    best = {k: min(v) for k, v in wall.items()}
    med = {k: statistics.median(v) for k, v in wall.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    return best, med, cpu_med, {k: [t * 1e3 for t in v] for k, v in wall.items()}


def bench_adversarial(
    device: torch.device,
    reps: int = 5,
    shape: tuple[int, ...] = SHAPE,
    periods: list[int] | None = None,
    fft_sizes: list[int] | None = None,
) -> dict:
    """Each step's time, interleaved, after one warm-up round; then each step's peak memory, one fresh process
    per measurement (CPU) or from the allocator (CUDA). Defaults: DAC's whole discriminator (periods 2 3 5 7 11,
    FFT sizes 2048 1024 512).

    Ratios use each step's fastest repetition: on a shared machine other processes only ever add time, and
    there a step's times spread over several x. The medians, the process CPU times and every repetition are in
    the result too."""
    periods, fft_sizes = periods or PERIODS, fft_sizes or FFT_SIZES
    best, med, cpu_med, wall = interleaved_steps(cases(device, periods, fft_sizes, shape), reps, device)
    mem = {k: peak(k, device, periods, fft_sizes, shape) for k in CASES}
    ratio = lambda a, b, d: d[a] / max(d[b], 1e-12)  # noqa: E731
    return {
        "shape": list(shape),
        "periods": periods,
        "fft_sizes": fft_sizes,
        "reps": reps,
        "ms": {k: v * 1e3 for k, v in best.items()},
        "median_ms": {k: v * 1e3 for k, v in med.items()},
        "cpu_median_ms": {k: v * 1e3 for k, v in cpu_med.items()},
        "ms_all": wall,
        "peak_mib": mem,
        "d_step_time_ratio": ratio("ours_d", "dac_d", best),
        "g_step_time_ratio": ratio("ours_g", "dac_g", best),
        "d_step_median_time_ratio": ratio("ours_d", "dac_d", med),
        "g_step_median_time_ratio": ratio("ours_g", "dac_g", med),
        "d_step_cpu_time_ratio": ratio("ours_d", "dac_d", cpu_med),
        "g_step_cpu_time_ratio": ratio("ours_g", "dac_g", cpu_med),
        "d_step_memory_ratio": ratio("ours_d", "dac_d", mem),
        "g_step_memory_ratio": ratio("ours_g", "dac_g", mem),
        "d_step_overhead_ratio": ratio("ours_d", "hand_d", best),
        "d_step_overhead_median_ratio": ratio("ours_d", "hand_d", med),
        "d_step_overhead_cpu_ratio": ratio("ours_d", "hand_d", cpu_med),
        "d_step_overhead_memory_ratio": ratio("ours_d", "hand_d", mem),
        "loss_update_overhead_ratio": ratio("loss_d", "hand_d", best),
        "loss_update_overhead_median_ratio": ratio("loss_d", "hand_d", med),
        "loss_update_overhead_cpu_ratio": ratio("loss_d", "hand_d", cpu_med),
        "loss_update_overhead_memory_ratio": ratio("loss_d", "hand_d", mem),
    }
