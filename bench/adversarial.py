"""The `dac` preset's D step and G step (MPD + MRD) against DAC's own discriminator code on the same shapes:
median time and peak memory as ratios (ours / DAC's). Call `bench_adversarial(device, reps)` from run.py.

DAC's side is dac/nn/loss.py's GANLoss as its scripts/train.py uses it: discriminator_loss, backward, clip 10,
AdamW step; then generator_loss (gen + 2 x feat) and backward, which also fills D's gradients. Ours is
Adversarial.update and Adversarial.generator_loss. Both discriminators hold the same weights.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import torch

HERE = Path(__file__).resolve().parent
SHAPE = (4, 1, 44100)
TESTS = HERE.parent / "plugins" / "distill-discriminators" / "tests"


def pair(width_periods: list[int], fft_sizes: list[int]):
    """DAC's Discriminator and our Adversarial with the same weights."""
    sys.path.insert(0, str(TESTS))
    from disc_anchors import anchor
    from disc_weights import dac_unwrap, load_anchor

    from distill_discriminators import Adversarial, AdversarialConfig

    theirs = anchor("dac.model.discriminator").Discriminator(periods=width_periods, fft_sizes=fft_sizes)
    ours = Adversarial(AdversarialConfig(preset="dac", discriminators=[
        {"kind": "mpd", "options": {"periods": width_periods, "always_pad": True, "normalize_input": True}},
        {"kind": "mrd", "options": {"fft_sizes": fft_sizes, "padding": "dac", "normalize_input": True}}]))
    flat = torch.nn.ModuleList([*ours.discriminators[0].discriminators, *ours.discriminators[1].discriminators])
    load_anchor(flat, theirs.discriminators, dac_unwrap)
    return theirs, ours


def cases(device: torch.device, periods: list[int], fft_sizes: list[int], shape=SHAPE
          ) -> dict[str, Callable[[], None]]:
    """Four step functions: ours and DAC's, D step and G step."""
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

    return {"ours_d": ours_d, "dac_d": dac_d, "ours_g": ours_g, "dac_g": dac_g}


CHILD = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {here!r})
import adversarial
torch.set_num_threads({threads})
fn = adversarial.cases(torch.device("cpu"), {periods!r}, {ffts!r}, {shape!r})[{name!r}]
fn()  # warm: optimizer state and allocator pools exist, as in training

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])

Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
before = status("VmRSS")
fn()
print(status("VmHWM") - before)
"""


def peak(name: str, device: torch.device, periods: list[int], ffts: list[int], shape: tuple[int, ...]) -> float:
    """MiB of one step: CUDA's allocator peak, or on CPU the peak RSS growth of a fresh process whose large
    blocks are returned on free (MALLOC_MMAP_THRESHOLD_), so peak RSS growth = peak live memory."""
    if device.type == "cuda":
        fn = cases(device, periods, ffts, shape)[name]
        fn()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    import os
    import subprocess

    code = CHILD.format(here=str(HERE), threads=torch.get_num_threads(), periods=periods, ffts=ffts,
                        shape=tuple(shape), name=name)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def bench_adversarial(device: torch.device, reps: int = 5, periods: list[int] | None = None,
                      fft_sizes: list[int] | None = None, shape: tuple[int, ...] = SHAPE) -> dict:
    """Median seconds of each step, interleaved, after one warm-up round; then each step's peak memory in a
    fresh process (CPU) or from the allocator (CUDA).
    Defaults: DAC's full discriminator (periods 2 3 5 7 11, fft 2048 1024 512) on [4, 1, 44100]."""
    periods, fft_sizes = periods or [2, 3, 5, 7, 11], fft_sizes or [2048, 1024, 512]
    fns = cases(device, periods, fft_sizes, shape)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(1 + reps):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times[name].append(time.perf_counter() - t)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    mem = {k: peak(k, device, periods, fft_sizes, shape) for k in fns}
    return {"shape": list(shape), "ms": {k: v * 1e3 for k, v in med.items()}, "peak_mib": mem,
            "d_step_time_ratio": med["ours_d"] / med["dac_d"], "g_step_time_ratio": med["ours_g"] / med["dac_g"],
            "d_step_memory_ratio": mem["ours_d"] / max(mem["dac_d"], 1e-9),
            "g_step_memory_ratio": mem["ours_g"] / max(mem["dac_g"], 1e-9)}


if __name__ == "__main__":
    import json

    torch.set_num_threads(2)
    small = "--small" in sys.argv
    print(json.dumps(bench_adversarial(torch.device("cpu"), reps=3 if small else 5,
                                       periods=[2, 3] if small else None, fft_sizes=[1024, 512] if small else None,
                                       shape=(2, 1, 8192) if small else SHAPE), indent=1))
