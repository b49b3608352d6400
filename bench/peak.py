"""Peak memory of one step, measured the same way for every bench section: CUDA's allocator peak, or on CPU the
peak RSS growth of a fresh process (Linux VmHWM after resetting it; ru_maxrss would inherit the parent's peak
across fork and exec) whose large blocks get their own mappings, returned on free (MALLOC_MMAP_THRESHOLD_), so
peak RSS growth = peak live memory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping

import torch

# Put in a child's setup after the models are built and before a warm-up step: the peak is then measured from
# there (``baseline_kib``), so a step that frees its gradients and optimizer temporaries after it runs and one
# that keeps them until its next start are measured alike, at their highest.
BASELINE = """
gc.collect()
baseline_kib = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if "VmRSS" in l)
"""

# Appended to a child's setup, which defines ``fn`` (the step) and leaves everything it needs allocated.
MEASURE_CHILD = """
gc.collect()

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])

Path("/proc/self/clear_refs").write_text("5")  # reset this process's peak RSS (VmHWM) to its current RSS
before = globals().get("baseline_kib") or status("VmRSS")
fn()
print(status("VmHWM") - before)
"""


def cuda_peak_mib(fn: Callable[[], object], over_built: bool = False) -> float:
    """MiB the allocator's peak rises above what is allocated, over one call of ``fn`` after a warm-up call;
    ``over_built``: above what was allocated before the warm-up (as ``BASELINE`` on CPU)."""
    torch.cuda.synchronize()
    built = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = built if over_built else torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


# The setup of a child that measures one step of a bench module's ``cases(...)`` over its built models.
STEP_CHILD = """
import gc, sys, torch, warnings
from pathlib import Path
warnings.simplefilter("ignore")
sys.path.insert(0, {here!r})
import {module}
torch.set_num_threads({threads})
fn = {module}.cases({arguments}, only={name!r})[{name!r}]
"""


def step_peak_mib(here: str, module: str, arguments: str, name: str) -> float:
    """MiB of step ``name`` of ``module.cases(arguments, only=name)`` (a bench module in ``here``) in a fresh
    process, after one warm-up call, over the built models (``BASELINE``): optimizer state and gradients count
    whenever a side holds them."""
    setup = STEP_CHILD.format(here=here, module=module, threads=torch.get_num_threads(), arguments=arguments, name=name)
    return fresh_process_peak_mib(setup + BASELINE + "fn()\n", {"PYTHONWARNINGS": "ignore"})


def fresh_process_peak_mib(setup: str, env: Mapping[str, str] | None = None) -> float:
    """MiB of peak RSS growth over one call of ``fn`` in a fresh Python process running ``setup`` (which must
    import gc and Path and define ``fn``) and then the measurement."""
    child_env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", **(env or {})}
    out = subprocess.run(
        [sys.executable, "-c", setup + MEASURE_CHILD], capture_output=True, text=True, check=True, env=child_env
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # KiB -> MiB
