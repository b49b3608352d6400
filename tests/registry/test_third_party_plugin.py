"""A third-party plugin through real pip: unknown before install, listed and used after, gone after uninstall."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def run(python, *args, cwd=None):
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def pip(python, *args):
    r = run(sys.executable, "-m", "pip", "--python", str(python), *args)
    assert r.returncode == 0, r.stderr
    return r


USE_IT = textwrap.dedent("""
    import torch
    from distill_core import CombinedLoss, load_config
    from distill_core.training.loop import train_epoch

    config = load_config({"recipe": "none", "terms": {"sisdr": {"weight": 0.5}, "kl": {"weight": 0.01}}})
    loss = CombinedLoss(config)
    x = torch.randn(4, 1, 256)
    out = loss({"recon": x + 0.1 * torch.randn_like(x), "target": x, "mu": torch.zeros(4, 3), "logvar": torch.zeros(4, 3)})
    print("keys", sorted(out))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(256, 256)
        def forward(self, x):
            return self.lin(x), torch.zeros(x.shape[0], 3), torch.zeros(x.shape[0], 3)

    model = Model()
    seen = []
    train_epoch(model, [x, x], torch.optim.SGD(model.parameters(), lr=0.01), loss_config=loss, callbacks=[seen.append], log_interval=1)
    print("components", sorted(seen[-1].components))
""")


@pytest.mark.serial
def test_install_use_uninstall(throwaway_env, tmp_path):
    config = tmp_path / "loss.toml"
    config.write_text('recipe = "none"\n[terms.sisdr]\nweight = 0.5\n')

    before = run(throwaway_env, "-m", "distill_core.cli.main", "check", str(config))
    assert before.returncode == 2
    assert "terms.sisdr: unknown term 'sisdr'" in before.stderr
    from distill_core import get_registry

    assert f"installed terms: {', '.join(sorted(get_registry().terms))}" in before.stderr

    pip(throwaway_env, "install", "-q", "--no-deps", "--no-build-isolation", str(ROOT / "examples" / "distill-sisdr"))
    listed = json.loads(run(throwaway_env, "-m", "distill_core.cli.main", "plugins", "--json").stdout)
    sisdr = next(t for t in listed["terms"] if t["name"] == "sisdr")
    assert (sisdr["distribution"], sisdr["version"], sisdr["module"]) == ("distill-sisdr", "0.1.0", "distill_sisdr")
    assert run(throwaway_env, "-m", "distill_core.cli.main", "check", str(config)).returncode == 0
    used = run(throwaway_env, "-c", USE_IT)
    assert used.returncode == 0, used.stderr
    assert "'sisdr_loss'" in used.stdout.splitlines()[0]
    assert used.stdout.splitlines()[1] == "components ['kl_loss', 'sisdr_loss']"  # every configured term

    pip(throwaway_env, "uninstall", "-y", "-q", "distill-sisdr")
    after = run(throwaway_env, "-m", "distill_core.cli.main", "plugins", "--json")
    assert "sisdr" not in [t["name"] for t in json.loads(after.stdout)["terms"]]
    assert run(throwaway_env, "-m", "distill_core.cli.main", "check", str(config)).returncode == 2


def test_scaffolded_plugin_installs_lists_and_passes_its_test(throwaway_env, tmp_path):
    made = run(throwaway_env, "-m", "distill_core.cli.main", "new-plugin", "spectral_flux", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    root = tmp_path / "distill-spectral-flux"
    pip(throwaway_env, "install", "-q", "--no-deps", "--no-build-isolation", str(root))
    listed = run(throwaway_env, "-m", "distill_core.cli.main", "plugins")
    assert "spectral_flux  (distill-spectral-flux==0.1.0, module distill_spectral_flux)" in listed.stdout
    tested = run(throwaway_env, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests"), cwd=root)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout  # conformance and discovery
