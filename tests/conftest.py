"""Fake loss terms for the core's unit tests (registered in-process, no plugin distribution needed), and the
shared fixtures: one torch thread, docs/config.md's loops run as written, and the DDP tests' two-rank
launcher (its workers, tests/*_worker.py, live beside this file); one torch thread per pytest-xdist worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import attrs
import pytest
import torch

from distill_core import LossTerm, Weight
from distill_core.terms.base import check_pair


@attrs.define
class L1Config:
    weight: Weight = 1.0
    scale: float = 1.0


class FakeL1(LossTerm):
    name = "fake_l1"
    config_class = L1Config
    requires = ("recon", "target")
    layouts = {"recon": "B, C, N", "target": "B, C, N"}
    zero_at_identity = True

    def forward(self, batch):
        recon, target = check_pair(self.name, batch, "recon", "target", "B, C, N")
        return (recon - target).abs().mean() * self.config.scale


@attrs.define
class SquareConfig:
    weight: Weight = 1.0


class FakeSquare(LossTerm):
    name = "fake_sq"
    config_class = SquareConfig
    requires = ("recon", "target")
    zero_at_identity = True

    def forward(self, batch):
        return (batch["recon"] - batch["target"]).pow(2).mean()


@attrs.define
class NormConfig:
    weight: Weight = 1.0


class FakeNorm(LossTerm):
    """Reads a key the other fakes do not: for missing-key tests."""

    name = "fake_norm"
    config_class = NormConfig
    requires = ("z",)

    def forward(self, batch):
        return batch["z"].pow(2).sum(dim=-1).mean()


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n 2``) each worker is its own process on the shared cores: one torch
    thread in each, and in the processes its tests start (see one_torch_thread for what two threads cost)."""
    if hasattr(config, "workerinput"):
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


def pytest_sessionfinish(session, exitstatus):
    """``make test`` splits the suite by marker (``-m "not serial"``, then ``-m serial``): a split that selects no
    test is said, not exit status 5 (which would stop make)."""
    markexpr = session.config.getoption("markexpr", "")
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and markexpr:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"no test matches -m {markexpr!r}")
        session.exitstatus = pytest.ExitCode.OK


@pytest.fixture
def fakes(register_term):
    register_term(FakeL1, FakeSquare, FakeNorm)
    return {"fake_l1": FakeL1, "fake_sq": FakeSquare, "fake_norm": FakeNorm}


@pytest.fixture
def small_batch():
    torch.manual_seed(0)
    return {"recon": torch.randn(3, 1, 16, requires_grad=True), "target": torch.randn(3, 1, 16), "z": torch.randn(3, 4)}


@pytest.fixture
def throwaway_env(tmp_path):
    """A venv without pip that sees the dev environment's packages and installs into its own site-packages."""
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "dev_env.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return python


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: on a shared 2-core machine two threads contend badly (a 0.3 s vocoder test
    took 22 s with two; a discriminator step 30x longer)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class GlooRuns:
    """A DDP test worker (tests/*_worker.py, built on gloo_worker) run alone on the whole batch, or as two gloo
    ranks with half of it each; each process saves its results to a .pt file, returned here loaded."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def alone(self, worker: str, *args: str) -> dict:
        out = self.folder / "single.pt"
        done = subprocess.run(
            [sys.executable, str(Path(__file__).with_name(worker)), *args, "--out", str(out)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return torch.load(out, weights_only=True)

    def two_ranks(self, worker: str, *args: str) -> list[dict]:
        outs = [self.folder / f"rank{r}.pt" for r in range(2)]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name(worker)),
                    *args,
                    "--rank",
                    str(r),
                    "--world",
                    "2",
                    "--store",
                    str(self.folder / "store"),
                    "--out",
                    str(out),
                ],
                env=self.env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r, out in enumerate(outs)
        ]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        return [torch.load(out, weights_only=True) for out in outs]


@pytest.fixture
def gloo_runs(tmp_path):
    return GlooRuns(tmp_path)


CONFIG_DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


@pytest.fixture
def config_doc_loop(tmp_path, monkeypatch):
    """Run a docs/config.md section's config file and Python loop as a reader would (in a fresh folder), with
    ``steps = N`` cut to ``fewer``; return the loop's namespace."""

    def run(heading: str, next_heading: str, toml_name: str, steps: int, fewer: int, what: str) -> dict:
        text = CONFIG_DOC.read_text()
        section = text[text.index(heading) : text.index(next_heading)]
        toml = re.search(rf"```toml\n(# {re.escape(toml_name)}.*?)```", section, re.S)
        code = re.search(r"```python\n(.*?)```", section, re.S)
        assert toml and code, f"docs/config.md lost its {what}"
        assert f"steps = {steps}\n" in code.group(1)
        (tmp_path / toml_name).write_text(toml.group(1))
        monkeypatch.chdir(tmp_path)
        scope: dict = {}
        exec(compile(code.group(1).replace(f"steps = {steps}\n", f"steps = {fewer}\n"), str(CONFIG_DOC), "exec"), scope)  # noqa: S102 - our own documentation
        return scope

    return run
