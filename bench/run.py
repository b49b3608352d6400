"""make bench: the stft term against auraloss and the STFT floor, the mel term against plain autograd, peak memory,
framework overhead, import time, the stoi and estoi terms' time per call, the adversarial term's D and G
steps against DAC's own code.

Every comparison runs in one process with its cases interleaved (A B C A B C ...) after a warm-up, and
reports the median of the repetitions as ratios. Results go to stdout and bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from peak import cuda_peak_mib, fresh_process_peak_mib

HERE = Path(__file__).resolve().parent
SIZES = {
    "seed [16,2,128,94] (flattened magnitude)": (16, 2, 128, 94),
    "waveform [8,1,65536]": (8, 1, 65536),
    "waveform [4,1,176400]": (4, 1, 176400),
}
MEL_SIZES = {"waveform [8,1,44100]": (8, 1, 44100), "waveform [4,1,132300]": (4, 1, 132300)}
ADVERSARIAL_SHAPE = [4, 1, 44100]  # 4 one-second signals at 44.1 kHz
BIGVGAN_SHAPE = [1, 1, 16384]  # one BigVGAN-v2 training segment is 65536 samples; a quarter keeps CPU runs short


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(
    fns: dict[str, Callable[[], None]], device: torch.device, reps: int, warmup: int = 3
) -> dict[str, float]:
    """Median seconds of each function, run in turn A B C A B C ... after ``warmup`` rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + reps):
        for name, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def signals(shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if len(shape) == 4:  # spectrogram: the stft term flattens channel 0 to [B, 1, F*T]
        x, y = (torch.rand(*shape, generator=g)[:, 0].reshape(shape[0], 1, -1) for _ in range(2))
    else:
        x, y = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    return x.to(device), y.to(device)


def stft_cases(x: torch.Tensor, y: torch.Tensor, autocast: torch.dtype | None):
    from distill_stft import STFTConfig, STFTLoss, auraloss_reference

    cfg = STFTConfig(input="waveform")
    ours = STFTLoss(cfg).to(x.device)
    theirs = auraloss_reference(cfg).to(x.device)
    windows = [torch.hann_window(w, device=x.device) for w in cfg.win_lengths]

    def ctx():
        return (
            torch.autocast(x.device.type, dtype=autocast) if autocast else torch.autocast(x.device.type, enabled=False)
        )

    def run_ours() -> None:
        xx = x.detach().requires_grad_(True)
        with ctx():
            loss = ours({"recon": xx, "target": y})
        loss.backward()

    def run_auraloss() -> None:
        xx = x.detach().requires_grad_(True)
        with ctx():
            loss = theirs(xx, y)
        loss.backward()

    def run_floor() -> None:
        xx = x.detach().requires_grad_(True)
        flat, flat_y = xx.reshape(-1, xx.shape[-1]), y.reshape(-1, y.shape[-1])
        total = 0.0
        for (fft, hop, win), w in zip(zip(cfg.fft_sizes, cfg.hop_sizes, cfg.win_lengths), windows):
            total = total + torch.view_as_real(torch.stft(flat, fft, hop, win, w, return_complex=True)).sum()
            with torch.no_grad():
                torch.stft(flat_y, fft, hop, win, w, return_complex=True)
        total.backward()

    return {"distill": run_ours, "auraloss": run_auraloss, "floor": run_floor}


def bench_stft(device: torch.device, reps: int, autocast: torch.dtype | None = None) -> list[dict]:
    rows = []
    for label, shape in SIZES.items():
        x, y = signals(shape, device)
        t = interleaved(stft_cases(x, y, autocast), device, reps)
        rows.append(
            {
                "size": label,
                "distill_ms": t["distill"] * 1e3,
                "auraloss_ms": t["auraloss"] * 1e3,
                "floor_ms": t["floor"] * 1e3,
                "speedup_vs_auraloss": t["auraloss"] / t["distill"],
                "ratio_to_floor": t["distill"] / t["floor"],
            }
        )
    return rows


def mel_reference(
    x: torch.Tensor, y: torch.Tensor, config, windows: list[torch.Tensor], filters: list[torch.Tensor]
) -> torch.Tensor:
    """DAC's multi-scale mel loss written with plain autograd: torch.stft, abs, filterbank, clamp/pow/log10, L1."""
    flat, flat_y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    total = x.new_zeros(())
    for w, window, fb in zip(config.window_lengths, windows, filters):
        mx, my = (fb @ torch.stft(s, w, w // 4, window=window, return_complex=True).abs() for s in (flat, flat_y))
        log = lambda m: m.clamp(config.clamp_eps).pow(config.pow).log10()  # noqa: E731
        total = total + config.log_weight * torch.nn.functional.l1_loss(log(mx), log(my))
        if config.mag_weight:
            total = total + config.mag_weight * torch.nn.functional.l1_loss(mx, my)
    return total


def closed_form_cases(term, reference, x: torch.Tensor, y: torch.Tensor):
    """A closed-form mel term and the same loss with plain autograd (its filters and windows prebuilt)."""
    term = term.to(x.device)
    windows = [s.window for s in term.loss.scales]
    filters = [s.fb for s in term.loss.scales]

    def run_ours() -> None:
        xx = x.detach().requires_grad_(True)
        term({"recon": xx, "target": y}).backward()

    def run_autograd() -> None:
        xx = x.detach().requires_grad_(True)
        reference(xx, y, term.config, windows, filters).backward()

    return {"distill": run_ours, "autograd": run_autograd}


def mel_cases(x: torch.Tensor, y: torch.Tensor, autocast: torch.dtype | None = None):
    """The mel term at DAC's defaults against plain autograd."""
    from distill_mel import MelConfig, MelLoss

    return closed_form_cases(MelLoss(MelConfig()), mel_reference, x, y)


def bench_against_autograd(sizes: dict, cases, device: torch.device, reps: int) -> list[dict]:
    """Forward + backward of each size, the term and its autograd reference interleaved."""
    rows = []
    for label, shape in sizes.items():
        x, y = signals(shape, device)
        t = interleaved(cases(x, y), device, reps)
        rows.append(
            {
                "size": label,
                "distill_ms": t["distill"] * 1e3,
                "autograd_ms": t["autograd"] * 1e3,
                "speedup_vs_autograd": t["autograd"] / t["distill"],
            }
        )
    return rows


def bench_mel(device: torch.device, reps: int) -> list[dict]:
    return bench_against_autograd(MEL_SIZES, mel_cases, device, reps)


AUDIOCRAFT_SIZES = {"waveform [8,1,48000]": (8, 1, 48000), "waveform [4,1,144000]": (4, 1, 144000)}


def audiocraft_reference(
    x: torch.Tensor, y: torch.Tensor, config, windows: list[torch.Tensor], filters: list[torch.Tensor]
) -> torch.Tensor:
    """audiocraft's msspec written with plain autograd: reflect and zero padding, torch.stft, |X|^2, filterbank,
    L1 plus alpha * MSE of log10(floor + mel)."""
    import math

    from torch.nn import functional as F

    flat, flat_y = x.reshape(-1, 1, x.shape[-1]), y.reshape(-1, 1, y.shape[-1])
    total, count = x.new_zeros(()), 0.0
    for w, window, fb in zip(config.window_lengths, windows, filters):
        hop, pad = w // 4, (w - w // 4) // 2
        tail = (math.ceil((x.shape[-1] + 2 * pad - w) / hop + 1) - 1) * hop + w - x.shape[-1] - 2 * pad
        scale = window.pow(2).sum().sqrt() if config.normalized else 1.0

        def mel(s: torch.Tensor) -> torch.Tensor:
            s = F.pad(F.pad(s, (pad, pad), "reflect"), (0, tail)).squeeze(1)
            spec = torch.stft(s, w, hop, window=window, center=False, return_complex=True) / scale
            return fb @ spec.abs().pow(2)

        alpha = math.sqrt(w - 1) if config.alphas else 1.0
        mx, my = mel(flat), mel(flat_y)
        total = (
            total
            + F.l1_loss(mx, my)
            + alpha * F.mse_loss(torch.log10(config.floor_level + mx), torch.log10(config.floor_level + my))
        )
        count += alpha + 1
    return total / count if config.normalized else total


def audiocraft_cases(x: torch.Tensor, y: torch.Tensor, autocast: torch.dtype | None = None):
    """The audiocraft_msspec term at its defaults (24 kHz) against plain autograd."""
    from distill_mel import AudiocraftConfig, AudiocraftMsspecLoss

    return closed_form_cases(AudiocraftMsspecLoss(AudiocraftConfig()), audiocraft_reference, x, y)


def bench_audiocraft(device: torch.device, reps: int) -> list[dict]:
    return bench_against_autograd(AUDIOCRAFT_SIZES, audiocraft_cases, device, reps)


MEMORY_CHILD = """
import gc, sys, torch
from pathlib import Path
sys.path.insert(0, {here!r})
import run
torch.set_num_threads({threads})
x, y = run.signals({shape!r}, torch.device("cpu"))
fn = getattr(run, {cases!r})(x, y, None)[{which!r}]
"""


def peak_memory(device: torch.device, threads: int, cases: str, shape: tuple[int, ...], which: str) -> float:
    """MiB of one forward + backward (bench/peak.py: the allocator's peak, or a fresh process's on CPU)."""
    if device.type == "cuda":
        x, y = signals(shape, device)
        return cuda_peak_mib(globals()[cases](x, y, None)[which])
    return fresh_process_peak_mib(
        MEMORY_CHILD.format(here=str(HERE), threads=threads, shape=shape, cases=cases, which=which)
    )


def bench_memory(
    device: torch.device,
    threads: int,
    cases: str = "stft_cases",
    sizes: dict | None = None,
    reference: str = "auraloss",
) -> list[dict]:
    """Peak memory of one forward + backward, the term against ``reference``, per size."""
    rows = []
    for label, shape in (sizes or SIZES).items():
        peaks = {which: peak_memory(device, threads, cases, shape, which) for which in ("distill", reference)}
        rows.append(
            {
                "size": label,
                "distill_mib": peaks["distill"],
                f"{reference}_mib": peaks[reference],
                "ratio": peaks["distill"] / max(peaks[reference], 1e-9),
            }
        )
    return rows


def bench_overhead(device: torch.device, reps: int) -> dict:
    """CombinedLoss with the recipe against one hand-written function of the same four terms."""
    from distill_stft.fast import FastMultiResolutionSTFT

    from distill_core import CombinedLoss, LossConfig

    config = LossConfig()
    combined = CombinedLoss(config).to(device)
    stft = FastMultiResolutionSTFT(config.terms["stft"]).to(device)
    g = torch.Generator().manual_seed(0)
    recon0 = torch.rand(16, 2, 128, 94, generator=g).to(device)
    target = torch.rand(16, 2, 128, 94, generator=g).to(device)
    mu, logvar = torch.randn(16, 32, generator=g).to(device), torch.randn(16, 32, generator=g).to(device)
    kl_weight = combined.weights(3, 10)["kl"]

    def hand_written() -> None:
        recon = recon0.detach().requires_grad_(True)
        b = recon.shape[0]
        stft_loss = stft(recon[:, 0].reshape(b, 1, -1), target[:, 0].reshape(b, 1, -1)).clamp(min=0)
        mag = (recon[:, 0] - target[:, 0]).abs().mean()
        w = target[:, 0] / (target[:, 0].mean() + 1e-8)
        inst = ((recon[:, 1] - target[:, 1]).abs() * w).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).clamp(min=0.1).sum(1).mean()
        recon_loss = 0.1 * (1.0 * mag + 0.5 * inst)
        total = stft_loss + recon_loss + kl_weight * kl
        total = torch.where(torch.isfinite(total), total, recon_loss)
        total.backward()

    def framework() -> None:
        recon = recon0.detach().requires_grad_(True)
        out = combined({"recon": recon, "target": target, "mu": mu, "logvar": logvar}, epoch=3, total_epochs=10)
        out["total_loss"].backward()

    t = interleaved({"combined": framework, "hand_written": hand_written}, device, reps)
    return {
        "combined_ms": t["combined"] * 1e3,
        "hand_written_ms": t["hand_written"] * 1e3,
        "ratio": t["combined"] / t["hand_written"],
    }


def bench_balancer(device: torch.device, reps: int) -> dict:
    """A demo training step (SpectrogramVAE, batch [16, 2, 256, 64], the recipe, Adam) balanced vs unbalanced.

    Balanced: stft, mag_recon and if_recon (the terms reading ``recon``) through GradientBalancer with the
    recipe's effective weights as shares, kl as the rest; unbalanced: CombinedLoss's total, backward.
    """
    from distill_core import CombinedLoss, LossConfig
    from distill_core.loss.balancer import BalancerConfig, GradientBalancer
    from distill_core.training.model import SpectrogramVAE

    config = LossConfig()
    combined = CombinedLoss(config).to(device)
    w = combined.weights(3, 10)
    group = config.groups["reconstruction"]
    members = group.member_weights()
    shares = {"stft": w["stft"], **{m: mw * w[m] * w["reconstruction"] for m, mw in members.items()}}
    balancer = GradientBalancer(BalancerConfig(enabled=True), list(shares)).to(device)
    torch.manual_seed(0)
    models = {"balanced": SpectrogramVAE(256, 64).to(device)}
    models["unbalanced"] = SpectrogramVAE(256, 64).to(device)
    models["unbalanced"].load_state_dict(models["balanced"].state_dict())
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=2e-3) for k, m in models.items()}
    x = torch.rand(16, 2, 256, 64, generator=torch.Generator().manual_seed(0)).to(device)

    def unbalanced() -> None:
        model, opt = models["unbalanced"], optimizers["unbalanced"]
        opt.zero_grad(set_to_none=True)
        recon, mu, logvar = model(x)
        combined({"recon": recon, "target": x, "mu": mu, "logvar": logvar}, epoch=3, total_epochs=10)[
            "total_loss"
        ].backward()
        opt.step()

    def balanced() -> None:
        model, opt = models["balanced"], optimizers["balanced"]
        opt.zero_grad(set_to_none=True)
        recon, mu, logvar = model(x)
        batch = {"recon": recon, "target": x, "mu": mu, "logvar": logvar}
        values = {name: combined.terms[name](batch) for name in shares}
        balancer.backward(values, shares, recon, combined.terms["kl"](batch) * w["kl"])
        opt.step()

    t = interleaved({"balanced": balanced, "unbalanced": unbalanced}, device, reps)
    return {
        "balanced_ms": t["balanced"] * 1e3,
        "unbalanced_ms": t["unbalanced"] * 1e3,
        "ratio": t["balanced"] / t["unbalanced"],
    }


IMPORT_CHILD = """
import gc, time, torch
spent, started = [0.0], [0.0]
def clock(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - started[0]
gc.callbacks.append(clock)
t, cpu = time.perf_counter(), time.process_time()
import distill_core
registry = distill_core.get_registry()
assert all(name in registry for name in ("stft", "mag_recon", "if_recon", "kl"))
if LOAD_ALL:
    registry.terms  # every term registered by reference imported and checked, as discovery did before #19
if BUILD:
    distill_core.CombinedLoss()  # the default recipe, built: recipes, config structuring, terms' buffers
print(time.perf_counter() - t, time.process_time() - cpu, spent[0])
"""
BYTECODE_OFF = "PYTHONDONTWRITEBYTECODE"  # set on the team's machines; a user's pip-installed packages have .pyc


def bench_import(reps: int, build: bool = False) -> dict:
    """Fresh processes, as a user's: bytecode caching on (warm-up children write the .pyc files first).

    Reports wall time, the child's CPU time (time.process_time: less sensitive to other processes' load) and
    the cyclic-GC time (passes over torch's objects) inside the window. With ``build``, the window also holds
    building the recipe's CombinedLoss. Interleaved with it, the same child that also loads every term registered
    by reference (``registry.terms``): the ratio is what loading terms on first use saves, measured in one run.
    """
    children = {load_all: f"BUILD = {build}\nLOAD_ALL = {load_all}\n" + IMPORT_CHILD for load_all in (False, True)}
    env = {k: v for k, v in os.environ.items() if k != BYTECODE_OFF}

    def run(child: str) -> tuple[float, ...]:
        out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True, env=env)
        return tuple(map(float, out.stdout.split()))

    for _ in range(2):  # warm-up: compile and cache every module's bytecode, warm the file cache
        for child in children.values():
            run(child)
    load = [os.getloadavg()[0]]
    runs: dict[bool, list[tuple[float, ...]]] = {False: [], True: []}
    for _ in range(reps):
        for load_all, child in children.items():
            runs[load_all].append(run(child))
    load.append(os.getloadavg()[0])
    lazy, eager = runs[False], runs[True]
    return {
        "median_ms": statistics.median(r[0] for r in lazy) * 1e3,
        "min_ms": min(r[0] for r in lazy) * 1e3,
        "median_cpu_ms": statistics.median(r[1] for r in lazy) * 1e3,
        "min_cpu_ms": min(r[1] for r in lazy) * 1e3,
        "median_gc_ms": statistics.median(r[2] for r in lazy) * 1e3,
        "all_loaded_median_ms": statistics.median(r[0] for r in eager) * 1e3,
        "ratio_to_all_loaded": statistics.median(r[0] for r in lazy) / statistics.median(r[0] for r in eager),
        "plugins": os.environ.get("DISTILL_PLUGINS", "all installed"),
        "load": load,
    }


def report_import(results: dict, key: str, title: str, reps: int) -> None:
    """One row: wall and CPU time of fresh processes, which plugins, and the machine's load while measured."""
    results[key] = i = bench_import(reps, build=key == "build")
    print(
        table(
            f"{title} (torch already imported; bytecode cached, as pip leaves it; plugins: {i['plugins']})",
            [
                "median ms",
                "min ms",
                "median CPU ms",
                "min CPU ms",
                "median ms in cyclic GC",
                "every term loaded: median ms",
                "ratio",
                "load (1 min)",
            ],
            [
                [
                    f"{i['median_ms']:.1f}",
                    f"{i['min_ms']:.1f}",
                    f"{i['median_cpu_ms']:.1f}",
                    f"{i['min_cpu_ms']:.1f}",
                    f"{i['median_gc_ms']:.1f}",
                    f"{i['all_loaded_median_ms']:.1f}",
                    f"{i['ratio_to_all_loaded']:.2f}x",
                    " to ".join(f"{x:.1f}" for x in i["load"]),
                ]
            ],
        )
    )


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join(
        [f"\n{title}", line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def report_stft(results: dict, device: torch.device, args: argparse.Namespace) -> None:
    results["stft"] = bench_stft(device, args.reps)
    print(
        table(
            "1-2. stft term, forward + backward (default 3 resolutions)",
            ["size", "speedup vs auraloss", "distill / floor", "distill ms", "auraloss ms", "floor ms"],
            [
                [
                    r["size"],
                    f"{r['speedup_vs_auraloss']:.2f}x",
                    f"{r['ratio_to_floor']:.2f}x",
                    f"{r['distill_ms']:.1f}",
                    f"{r['auraloss_ms']:.1f}",
                    f"{r['floor_ms']:.1f}",
                ]
                for r in results["stft"]
            ],
        )
    )
    if device.type == "cuda":
        results["stft_bf16_autocast"] = bench_stft(device, args.reps, torch.bfloat16)
        print(
            table(
                "1-2b. stft term under bf16 autocast",
                ["size", "speedup vs auraloss", "distill / floor"],
                [
                    [r["size"], f"{r['speedup_vs_auraloss']:.2f}x", f"{r['ratio_to_floor']:.2f}x"]
                    for r in results["stft_bf16_autocast"]
                ],
            )
        )
    results["memory"] = bench_memory(device, args.threads)
    print(
        table(
            "3. peak memory of forward + backward",
            ["size", "distill / auraloss", "distill MiB", "auraloss MiB"],
            [
                [r["size"], f"{r['ratio']:.2f}x", f"{r['distill_mib']:.1f}", f"{r['auraloss_mib']:.1f}"]
                for r in results["memory"]
            ],
        )
    )


def report_mel(results: dict, device: torch.device, args: argparse.Namespace) -> None:
    results["mel"] = bench_mel(device, args.reps)
    results["mel_memory"] = bench_memory(device, args.threads, "mel_cases", MEL_SIZES, "autograd")
    memory = {r["size"]: r for r in results["mel_memory"]}
    print(
        table(
            "3b. mel term at DAC's defaults (7 scales, windows 32-2048), forward + backward, vs plain autograd",
            [
                "size",
                "speedup vs autograd",
                "peak memory vs autograd",
                "distill ms",
                "autograd ms",
                "distill MiB",
                "autograd MiB",
            ],
            [
                [
                    r["size"],
                    f"{r['speedup_vs_autograd']:.2f}x",
                    f"{memory[r['size']]['ratio']:.2f}x",
                    f"{r['distill_ms']:.1f}",
                    f"{r['autograd_ms']:.1f}",
                    f"{memory[r['size']]['distill_mib']:.1f}",
                    f"{memory[r['size']]['autograd_mib']:.1f}",
                ]
                for r in results["mel"]
            ],
        )
    )


def report_audiocraft(results: dict, device: torch.device, args: argparse.Namespace) -> None:
    results["audiocraft_msspec"] = bench_audiocraft(device, args.reps)
    results["audiocraft_msspec_memory"] = bench_memory(
        device, args.threads, "audiocraft_cases", AUDIOCRAFT_SIZES, "autograd"
    )
    memory = {r["size"]: r for r in results["audiocraft_msspec_memory"]}
    print(
        table(
            "3c. audiocraft_msspec at its defaults (24 kHz, 5 scales, windows 64-1024), forward + backward, "
            "vs plain autograd",
            [
                "size",
                "speedup vs autograd",
                "peak memory vs autograd",
                "distill ms",
                "autograd ms",
                "distill MiB",
                "autograd MiB",
            ],
            [
                [
                    r["size"],
                    f"{r['speedup_vs_autograd']:.2f}x",
                    f"{memory[r['size']]['ratio']:.2f}x",
                    f"{r['distill_ms']:.1f}",
                    f"{r['autograd_ms']:.1f}",
                    f"{memory[r['size']]['distill_mib']:.1f}",
                    f"{memory[r['size']]['autograd_mib']:.1f}",
                ]
                for r in results["audiocraft_msspec"]
            ],
        )
    )


STOI_SHAPE = (8, 1, 64000)  # eight 4 s clips at 16 kHz


def bench_stoi(device: torch.device, reps: int) -> list[dict]:
    """The stoi and estoi terms at 16 kHz: forward + backward, forward alone, and pystoi scoring the same eight
    clips one by one (value only, numpy, on the CPU)."""
    from distill_stoi import ESTOIConfig, ESTOILoss, STOIConfig, STOILoss
    from pystoi import stoi as pystoi_score

    x, y = signals(STOI_SHAPE, device)
    rows_x, rows_y = (t.double().cpu().numpy()[:, 0] for t in (x, y))
    rows = []
    for term in (STOILoss(STOIConfig()).to(device), ESTOILoss(ESTOIConfig()).to(device)):

        def backward(term=term) -> None:
            term({"recon": x.detach().requires_grad_(True), "target": y}).backward()

        @torch.no_grad()
        def forward(term=term) -> None:
            term({"recon": x, "target": y})

        def reference(extended=term.extended) -> None:
            for clean, processed in zip(rows_y, rows_x):
                pystoi_score(clean, processed, 16_000, extended=extended)

        t = interleaved({"backward": backward, "forward": forward, "pystoi": reference}, device, reps)
        rows.append(
            {
                "term": term.name,
                "size": "waveform [8,1,64000] at 16 kHz",
                "fwd_bwd_ms": t["backward"] * 1e3,
                "fwd_ms": t["forward"] * 1e3,
                "pystoi_ms": t["pystoi"] * 1e3,
                "pystoi_over_fwd": t["pystoi"] / t["forward"],
            }
        )
    return rows


def report_stoi(results: dict, device: torch.device, args: argparse.Namespace) -> None:
    results["stoi"] = bench_stoi(device, args.reps)
    print(
        table(
            "7. stoi / estoi terms, time per call (pystoi: the same 8 clips, value only, numpy)",
            ["term", "size", "fwd + bwd ms", "fwd ms", "pystoi ms", "pystoi / fwd"],
            [
                [
                    r["term"],
                    r["size"],
                    f"{r['fwd_bwd_ms']:.1f}",
                    f"{r['fwd_ms']:.1f}",
                    f"{r['pystoi_ms']:.1f}",
                    f"{r['pystoi_over_fwd']:.2f}x",
                ]
                for r in results["stoi"]
            ],
        )
    )


def steps_table(title: str, result: dict, theirs: str, label: str) -> str:
    """The D and G steps of ours against an anchor's (``theirs``: the result's key prefix), as ratios and figures."""
    ms, mib = result["ms"], result["peak_mib"]
    return table(
        title,
        ["step", f"time ours / {label}", "median", "CPU time", f"peak memory ours / {label}"]
        + ["ours ms", f"{label} ms", "ours MiB", f"{label} MiB"],
        [
            [
                step,
                f"{result[f'{key}_step_time_ratio']:.2f}x",
                f"{result[f'{key}_step_median_time_ratio']:.2f}x",
                f"{result[f'{key}_step_cpu_time_ratio']:.2f}x",
                f"{result[f'{key}_step_memory_ratio']:.2f}x",
                f"{ms[f'ours_{key}']:.0f}",
                f"{ms[f'{theirs}_{key}']:.0f}",
                f"{mib[f'ours_{key}']:.1f}",
                f"{mib[f'{theirs}_{key}']:.1f}",
            ]
            for step, key in (("D step", "d"), ("G step", "g"))
        ],
    )


def report_adversarial(results: dict, device: torch.device, args: argparse.Namespace) -> None:
    """The dac preset's D and G steps against DAC's GANLoss and the D step's framework overhead (adversarial.py)."""
    import adversarial

    missing = adversarial.anchors_missing()
    if missing:
        print(f"\n8. adversarial: skipped ({missing})")
        return
    shape = tuple(args.adversarial_shape)
    a = results["adversarial"] = adversarial.bench_adversarial(device, args.adversarial_reps, shape)
    print(
        steps_table(
            f"8. the dac preset (MPD 2 3 5 7 11 + MRD 2048 1024 512) on {list(shape)}, vs DAC's own GANLoss "
            f"(fastest of {args.adversarial_reps}; median and CPU-time ratios beside)",
            a,
            "dac",
            "DAC",
        )
    )
    print(
        table(
            "8b. framework overhead around the D step vs a hand-written step, same modules",
            ["D step", "time ratio", "median", "CPU time", "peak memory ratio", "ms", "hand-written ms"],
            [
                [
                    label,
                    f"{a[f'{key}_ratio']:.3f}x",
                    f"{a[f'{key}_median_ratio']:.3f}x",
                    f"{a[f'{key}_cpu_ratio']:.3f}x",
                    f"{a[f'{key}_memory_ratio']:.2f}x",
                    f"{a['ms'][case]:.0f}",
                    f"{a['ms']['hand_d']:.0f}",
                ]
                for label, key, case in (
                    ("Adversarial.update", "d_step_overhead", "ours_d"),
                    ("CombinedLoss.update", "loss_update_overhead", "loss_d"),
                )
            ],
        )
    )


def report_bigvgan(results: dict, device: torch.device, args: argparse.Namespace) -> None:
    """The bigvgan_v2 preset's D and G steps against BigVGAN-v2's train.py pieces (bigvgan_steps.py)."""
    import bigvgan_steps

    missing = bigvgan_steps.anchors_missing()
    if missing:
        print(f"\n9. bigvgan: skipped ({missing})")
        return
    shape = tuple(args.bigvgan_shape)
    b = results["bigvgan"] = bigvgan_steps.bench_bigvgan(device, args.bigvgan_reps, shape, args.bigvgan_width)
    print(
        steps_table(
            f"9. the bigvgan_v2 preset (MPD 2 3 5 7 11 + MS-SB-CQTD, 44.1 kHz) at width {args.bigvgan_width:g} on "
            f"{list(shape)}, vs BigVGAN-v2's train.py (fastest of {args.bigvgan_reps}; median and CPU time beside)",
            b,
            "bigvgan",
            "BigVGAN",
        )
    )


SECTIONS = ("stft", "mel", "audiocraft", "overhead", "import", "build", "balancer", "stoi", "adversarial", "bigvgan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only these sections (repeatable); default: all"
    )
    parser.add_argument(
        "--adversarial-shape",
        type=int,
        nargs=3,
        default=ADVERSARIAL_SHAPE,
        metavar=("B", "C", "N"),
        help="waveform shape of the adversarial section (default %(default)s)",
    )
    parser.add_argument("--adversarial-reps", type=int, default=5, help="repetitions of each adversarial step")
    parser.add_argument(
        "--bigvgan-shape",
        type=int,
        nargs=3,
        default=BIGVGAN_SHAPE,
        metavar=("B", "C", "N"),
        help="waveform shape of the bigvgan section (default %(default)s)",
    )
    parser.add_argument("--bigvgan-reps", type=int, default=3, help="repetitions of each bigvgan step")
    parser.add_argument(
        "--bigvgan-width", type=float, default=1.0, help="channel multiplier of both discriminators (1: published)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "python": platform.python_version(),
        "reps": args.reps,
    }
    print(
        f"torch {env['torch']}, {env['threads']} threads, CPU: {env['cpu']}, device: {env['device']}, "
        f"median of {args.reps} interleaved repetitions after 3 warm-up rounds"
    )
    results: dict = {"environment": env}
    only = set(args.only or SECTIONS)
    if "stft" in only:
        report_stft(results, device, args)
    if "mel" in only:
        report_mel(results, device, args)
    if "audiocraft" in only:
        report_audiocraft(results, device, args)
    if "overhead" in only:
        results["overhead"] = bench_overhead(device, args.reps)
        o = results["overhead"]
        print(
            table(
                "4. CombinedLoss (recipe) vs a hand-written function, seed size",
                ["ratio", "combined ms", "hand-written ms"],
                [[f"{o['ratio']:.3f}x", f"{o['combined_ms']:.2f}", f"{o['hand_written_ms']:.2f}"]],
            )
        )
    if "import" in only:
        report_import(results, "import", "5. import distill_core + discovery of the installed plugins", args.reps)
    if "build" in only:
        report_import(
            results,
            "build",
            "5b. import + discovery + building the recipe's CombinedLoss (#19 asks "
            "<= 60 ms median with the six plugins stft, mag-recon, if-recon, kl, auraloss, mel)",
            args.reps,
        )
    if "balancer" in only:
        results["balancer"] = bench_balancer(device, args.reps)
        b = results["balancer"]
        print(
            table(
                "6. demo training step [16,2,256,64] with the recipe: gradient balancer on vs off",
                ["balanced / unbalanced", "balanced ms", "unbalanced ms"],
                [[f"{b['ratio']:.3f}x", f"{b['balanced_ms']:.1f}", f"{b['unbalanced_ms']:.1f}"]],
            )
        )
    if "stoi" in only:
        report_stoi(results, device, args)
    if "adversarial" in only:
        report_adversarial(results, device, args)
    if "bigvgan" in only:
        report_bigvgan(results, device, args)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
