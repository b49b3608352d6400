"""The public face survives the move into packages: each public module's ``__all__`` as snapshotted here, every
name the shipped plugins import still importable, the old module paths still working (with one warning naming
the new path), and ``import distill_core`` as cheap as its docstring says."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SNAPSHOT = {
    "distill_core": [
        "BalancerConfig", "BatchError", "BrokenPlugin", "CombinedLoss", "ConfigError", "Constant", "Cosine",
        "Cyclical", "GradientBalancer", "GroupConfig", "InvalidConfig", "LinearWarmup", "LossConfig", "LossTerm",
        "PATH_RELATIVE_TO_FILE", "PluginError", "Provenance", "REQUIRED_IN_FILES", "Recipe", "Registry", "Schedule", "TermBinding", "TermBuildError", "TermInfo",
        "UnknownTermError", "Weight", "converter", "dump_config", "dumps_config", "get_registry", "hookimpl",
        "load_config", "register", "reset_registry", "weight_at",
    ],
    "distill_core.training": [
        "DemoSettings", "EpochMetrics", "KLLossConfig", "LossConfig", "MetricsHistory", "ReconLossConfig",
        "STFTLossConfig", "SpectrogramConfig", "SpectrogramVAE", "StepMetrics", "Vocoder", "VocoderAdapter",
        "VocoderConfig", "VocoderTraining", "WavSegments", "from_spectrogram", "run_demo", "run_vocoder",
        "to_spectrogram", "train", "train_epoch", "validate_epoch", "vocoder_batch",
    ],
    "distill_core.models": [
        "compute_combined_loss", "compute_kl_divergence", "create_stft_loss", "get_kl_weight", "kl_per_dimension",
        "raw_kl", "vae_loss",
    ],
    "distill_core.testing": [
        "BatchFactory", "FACTORY_SEED", "SYNC_METHODS", "check_discovery", "check_stateful", "check_term",
        "distill_registry", "register_term", "sync_counter", "write_distribution",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(SNAPSHOT))
def test_all_is_the_snapshot_and_every_name_resolves(module):
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(SNAPSHOT[module])
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == []


def _plugin_imports() -> set[tuple[str, str]]:
    """(module, name) for every ``from distill_core... import name`` in the shipped plugins' code and tests."""
    found = set()
    for path in sorted((ROOT / "plugins").glob("*/**/*.py")):
        if ".egg-info" in str(path):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("distill_core"):
                found |= {(node.module, alias.name) for alias in node.names}
    return found


def test_every_name_the_plugins_import_resolves_without_a_warning():
    names = _plugin_imports()
    assert len(names) > 20
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        missing = [f"{m}.{n}" for m, n in sorted(names) if not hasattr(importlib.import_module(m), n)]
    assert missing == []


@pytest.mark.parametrize(
    "old, new",
    [
        ("distill_core.combined", "distill_core.loss.combined"),
        ("distill_core.plugins", "distill_core.registry.discovery"),
        ("distill_core.schedules", "distill_core.config.schedules"),
        ("distill_core.epoch", "distill_core.engine.passes"),
    ],
)
def test_an_old_module_path_is_the_new_module_with_one_warning(old, new):
    code = (
        "import warnings, importlib\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        "print(old is new)\n"
        f"print([str(x.message) for x in w if {old!r} + ' moved' in str(x.message)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.splitlines()
    assert out[0] == "True"
    assert out[1] == repr([f"{old} moved to {new}; import it from there"])


def test_the_seed_paths_import_without_a_warning():
    code = (
        "import warnings\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "import distill_core.models, distill_core.models.losses, distill_core.training, distill_core.training.config\n"
        "from distill_core.training import LossConfig, train\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("module", ["distill_core", "distill_core.testing.plugin"])
def test_importing_the_package_or_its_pytest_plugin_imports_no_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules, 'distill_core.loss.combined' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["False", "False"], r.stderr[-2000:]
