"""``distill-loss new-plugin NAME --discriminator`` (issue 31, item 8): the distribution it writes installs with
real pip into a throwaway venv (never .venv), is listed by ``distill-loss plugins`` among the discriminator kinds
with its distribution, version and options, and passes its own tests unedited."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run(python, *args, cwd=None):
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def test_a_scaffolded_discriminator_installs_is_listed_and_passes_its_tests(throwaway_env, tmp_path):
    made = run(
        throwaway_env,
        "-m",
        "distill_core.cli.main",
        "new-plugin",
        "sub_band",
        "--discriminator",
        "--dir",
        str(tmp_path),
    )
    assert made.returncode == 0, made.stderr
    root = tmp_path / "distill-sub-band"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "README.md",
        "distill_sub_band/__init__.py",
        "pyproject.toml",
        "tests/test_sub_band.py",
    ]
    before = run(throwaway_env, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests"), cwd=root)
    assert before.returncode == 1 and "unknown discriminator kind 'sub_band'" in before.stdout  # not installed yet

    pip = run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(throwaway_env),
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        str(root),
    )
    assert pip.returncode == 0, pip.stderr
    listed = run(throwaway_env, "-m", "distill_core.cli.main", "plugins")
    lines = listed.stdout.splitlines()
    at = lines.index("sub_band  (distill-sub-band==0.1.0, module distill_sub_band)")
    assert lines.index("discriminator kinds (the kind of each [[terms.adversarial.discriminators]] entry):") < at
    assert lines[at + 1 : at + 7] == [
        "    normalize_input: bool = false",
        "    first_layer_features: bool = true",
        "    scales: tuple[int, ...] = [1, 2, 4]",
        "    channels: int = 16",
        "    width: float = 1.0",
        "    negative_slope: float = 0.2",
    ]
    data = json.loads(run(throwaway_env, "-m", "distill_core.cli.main", "plugins", "--json").stdout)
    entry = next(e for e in data["sections"]["discriminators"]["entries"] if e["name"] == "sub_band")
    assert (entry["distribution"], entry["version"], entry["entry_point"]) == (
        "distill-sub-band",
        "0.1.0",
        "sub_band = distill_sub_band",
    )
    assert not [b for b in data["broken"] if "sub" in b["name"]]  # a discriminator-only plugin is not broken

    tested = run(throwaway_env, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests"), cwd=root)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout  # the forward contract, the test kit on the adversarial term, discovery


def test_the_term_template_is_unchanged_without_the_flag(tmp_path):
    from distill_core.cli.scaffold import scaffold

    term = (scaffold("flux", tmp_path) / "distill_flux" / "__init__.py").read_text()
    disc = (scaffold("flux_d", tmp_path, discriminator=True) / "distill_flux_d" / "__init__.py").read_text()
    assert "class FluxLoss(LossTerm):" in term and "distill_discriminators" not in term
    assert "class FluxD(Discriminator):" in disc and "def distill_discriminators(register" in disc
