"""The structure the code promises: the generic core names no consumer, layers import only downward, and an
import hidden in a function says why."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "distill_core"
# The seed's terms and batch keys (the seed wing owns them; ``recon`` and ``target`` are the shared inputs).
CONSUMER_NAMES = ("stft", "mag_recon", "if_recon", "kl", "kl_weight", "kl_divergence", "reconstruction", "mu", "logvar")


def layers() -> list[list[str]]:
    """The import-linter contract's layers, highest first, each a list of packages."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = config["tool"]["importlinter"]["contracts"][0]
    return [[m.strip() for m in re.split(r"[:|]", layer)] for layer in contract["layers"]]


#: The generic core: the layers below the seed wing (the engine and everything under it).
CORE_LAYERS = ("engine", "loss", "registry", "terms", "dsp", "config", "files", "util")


def core_modules() -> list[Path]:
    """The files of the generic core: every module of its packages, and the package's own top-level modules."""
    listed = {m.rsplit(".", 1)[1] for layer in layers() for m in layer}
    assert set(CORE_LAYERS) <= listed
    return sorted(
        [p for name in CORE_LAYERS for p in (PACKAGE / name).rglob("*.py")] + [p for p in PACKAGE.glob("*.py")]
    )


def test_every_package_is_placed_in_a_layer():
    listed = {m.rsplit(".", 1)[1] for layer in layers() for m in layer}
    on_disk = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert on_disk == listed  # a new package must be placed in a layer
    # besides the packages, only the public face and the map of moved paths live at the top
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "_moved.py"]


def test_the_core_names_no_consumer():
    pattern = re.compile(r"\b(" + "|".join(CONSUMER_NAMES) + r")\b", re.IGNORECASE)
    found = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in core_modules()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []


def test_the_check_sees_a_consumer_name(tmp_path):
    """The pattern above is not vacuous: the seed wing, which owns these names, is full of them."""
    pattern = re.compile(r"\b(" + "|".join(CONSUMER_NAMES) + r")\b")
    assert pattern.search((PACKAGE / "seed" / "recipe.py").read_text(encoding="utf-8"))
    assert all(p.is_file() for p in core_modules()) and len(core_modules()) > 25


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """import-linter sees imports inside functions too: a core module importing the seed wing is caught."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("distill_core")
    graph.add_import(importer="distill_core.loss.combined", imported="distill_core.seed.losses")
    chains = graph.find_illegal_dependencies_for_layers(
        layers=[grimp.Layer(*layer) for layer in [[m] for m in ("distill_core.training", "distill_core.seed")]]
        + [grimp.Layer(*(f"distill_core.{name}" for name in CORE_LAYERS), independent=False)],
        containers=set(),
    )
    assert any("distill_core.loss.combined" in route.heads for d in chains for route in d.routes)


def hidden_imports(path: Path) -> list[str]:
    """distill_core imports inside functions with no comment on their line or above their run of imports."""
    src = path.read_text(encoding="utf-8").splitlines()
    bad = []
    for fn in ast.walk(ast.parse("\n".join(src))):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if not (
                isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("distill_core"))
            ):
                continue
            i = node.lineno - 1
            while "#" not in src[i]:
                i -= 1
                while i >= 0 and not src[i].strip():
                    i -= 1
                line = src[i].strip()
                if line.startswith("#"):
                    break
                if not line.startswith(("from ", "import ")):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                    break
    return bad


def test_every_import_hidden_in_a_function_says_why():
    assert [b for p in sorted(PACKAGE.rglob("*.py")) for b in hidden_imports(p)] == []
