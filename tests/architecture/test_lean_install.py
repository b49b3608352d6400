"""``pip install distill-core`` without extras: the loss framework works; CLI, plots and pytest are absent.

Built from this checkout as wheels and installed into a fresh venv. Installing torch into every fresh venv
would take over a minute, so torch comes from the running interpreter instead, but only torch and its own
requirements: their files are linked into one folder that the fresh venv reads through a .pth file, added
after pip has finished (pip never writes there). Every other package is installed by pip from the
requirements the built wheel declares, and ``pip check`` confirms the result is complete. The fresh venv has
no pip of its own: the running pip installs into it (``--python``), so its site-packages holds exactly what
distill-core pulls in.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = [pytest.mark.serial, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
TORCH_DEPENDENT = {"torch", "auraloss"}  # come from the linked folder, or are installed without their deps


def pip(*args: str, python: Path | None = None) -> subprocess.CompletedProcess[str]:
    target = ("--python", str(python)) if python is not None else ()
    r = subprocess.run(
        [sys.executable, "-m", "pip", *target, *args, "-q", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode:
        raise AssertionError(f"pip {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r


def build_wheels(projects: list[Path], out: Path) -> list[Path]:
    """``pip wheel --no-deps`` of each project folder, with the build backend already installed here."""
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), *map(str, projects))
    return sorted(out.glob("*.whl"))


def requirements(wheel: Path, extras: tuple[str, ...] = ()) -> list[Requirement]:
    """The Requires-Dist lines of a built wheel that apply here (markers evaluated, with ``extras``)."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    env = default_environment()
    return [r for r in reqs if r.marker is None or any(r.marker.evaluate({**env, "extra": e}) for e in ("", *extras))]


def dependency_closure(name: str) -> list[metadata.Distribution]:
    """``name`` and every distribution it requires, recursively, as installed in the running interpreter."""
    env = default_environment()
    seen: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = canonicalize_name(todo.pop())
        if key in seen:
            continue
        dist = metadata.distribution(key)
        seen[key] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def link_distributions(dists: list[metadata.Distribution], folder: Path) -> None:
    """Symlink each distribution's top-level files and its .dist-info into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for dist in dists:
        base = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops:
            source = base / top
            if top.startswith("..") or top == "__pycache__" or not source.exists():
                continue
            link = folder / top
            if not link.exists():
                link.symlink_to(source)


def site_packages(venv: Path) -> Path:
    vars = {"base": str(venv), "platbase": str(venv)}
    return Path(sysconfig.get_path("purelib", vars=vars))


def lean_venv(venv: Path, wheels: list[Path], core: Path) -> Path:
    """A venv with the wheels installed and only what the core wheel requires (no extras); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    deps = [str(r) for r in requirements(core) if canonicalize_name(r.name) not in TORCH_DEPENDENT]
    pip("install", "--only-binary", ":all:", *deps, python=python)
    torch_free = [str(r) for r in requirements(core) if canonicalize_name(r.name) == "auraloss"]
    pip("install", "--no-deps", *torch_free, *map(str, wheels), python=python)
    linked = venv.parent / f"{venv.name}-torch"
    link_distributions(dependency_closure("torch"), linked)
    (site_packages(venv) / "zz_torch_only.pth").write_text(f"{linked}\n")
    pip("check", python=python)
    return python


def du_kib(path: Path) -> int:
    """Disk use in KiB as ``du -sk`` reports it (symlinks not followed)."""
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


ABSENT = ("pytest", "click", "matplotlib", "tqdm", "tensorboard", "hypothesis", "jsonschema")

USE_THE_LOSS = """
import importlib.util, torch
from distill_core import CombinedLoss, LossConfig, load_config
absent = [m for m in {absent!r} if importlib.util.find_spec(m) is not None]
assert not absent, f"installed without being asked for: {{absent}}"
loss = CombinedLoss(LossConfig())
torch.manual_seed(0)
recon = torch.rand(2, 2, 64, 32, requires_grad=True)
out = loss({{"recon": recon, "target": torch.rand(2, 2, 64, 32), "mu": torch.randn(2, 8),
            "logvar": torch.randn(2, 8)}}, epoch=0, total_epochs=4)
out["total_loss"].backward()
assert torch.isfinite(out["total_loss"]) and recon.grad.abs().sum() > 0
print(sorted(k for k in out if k.endswith("_loss")))
print(sorted(loss.provenance))
"""


@pytest.fixture(scope="module")
def lean(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lean")
    wheels = build_wheels([ROOT, *PLUGINS], tmp / "wheels")
    core = next(w for w in wheels if w.name.startswith("distill_core-"))
    return lean_venv(tmp / "venv", wheels, core), core


def test_the_wheel_requires_only_the_loss_framework(lean):
    _, core = lean
    base = sorted(r.name for r in requirements(core))
    assert base == ["attrs", "auraloss", "cattrs", "numpy", "packaging", "pluggy", "pyyaml", "tomli-w", "torch"]
    with_train = {r.name for r in requirements(core, ("train",))} - set(base)
    assert with_train == {"click", "tqdm", "matplotlib", "tensorboard", "filelock", "scipy"}
    assert {"pytest", "hypothesis", "jsonschema"} <= {r.name for r in requirements(core, ("test",))}


def test_combined_loss_runs_in_a_lean_venv_without_the_extras(lean):
    python, _ = lean
    r = subprocess.run(
        [str(python), "-c", USE_THE_LOSS.format(absent=ABSENT)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    keys, terms = r.stdout.splitlines()
    assert keys == str(["if_recon_loss", "kl_loss", "mag_recon_loss", "recon_loss", "stft_loss", "total_loss"])
    assert terms == str(["if_recon", "kl", "mag_recon", "stft"])


@pytest.mark.e2e
def test_the_console_script_names_the_train_extra_in_one_line(lean):
    python, _ = lean
    r = subprocess.run([str(python.parent / "distill-loss"), "plugins"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "error: distill-loss needs click, which is not installed; install the 'train' "
        "extra: pip install 'distill-core[train]'"
    ]


def test_the_test_kit_names_the_test_extra_without_pytest(lean):
    python, _ = lean
    r = subprocess.run(
        [str(python), "-c", "import distill_core.testing.plugin"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        "distill_core.util.extras.MissingExtra: the test kit distill_core.testing needs pytest, which is not installed; "
        "install the 'test' extra: pip install 'distill-core[test]'"
    )


def test_config_files_load_and_dump_in_a_lean_venv(lean, tmp_path):
    python, _ = lean
    script = (
        f"from distill_core import LossConfig, dump_config, load_config\n"
        f"for suffix in ('.toml', '.yaml', '.json'):\n"
        f"    path = dump_config(LossConfig(), r'{tmp_path}/loss' + suffix)\n"
        f"    assert load_config(path) == LossConfig(), suffix\n"
    )
    r = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
