"""The converter is made whole by one factory: schedules are a tagged union, classes say how they structure in
their own definitions, nothing registers hooks at import, and so a config structures the same whatever was
imported first."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from distill_core import ConfigError, Constant, Cosine, LinearWarmup, LossConfig, Schedule, load_config
from distill_core.config.converter import converter, make_converter, unstructure

ROOT = Path(__file__).resolve().parents[2]

# Valid and invalid tables over the core and the plugins whose configs had hooks of their own.
CASES = {
    "vae default": {},
    "schedule weight": {"terms": {"kl": {"weight": {"schedule": "linear_warmup", "max": 0.5}}}},
    "unknown schedule": {"terms": {"kl": {"weight": {"schedule": "cosin"}}}},
    "mel window too large": {"recipe": "none", "terms": {"mel": {"window_lengths": [2**30], "n_mels": [64]}}},
    "mel bad range": {"recipe": "none", "terms": {"mel_stft": {"range_start": 1}}},
    "auraloss mel without rate": {"recipe": "none", "terms": {"auraloss_melstft": {"n_mels": 64}}},
    "auraloss mel bad hop": {"recipe": "none", "terms": {"auraloss_melstft": {"sample_rate": 16000, "hop_size": 0}}},
}

SCRIPT = """
import json, sys
first = sys.argv[1].split(",")
for name in first:
    __import__(name)
from distill_core import ConfigError, load_config
from distill_core.config.converter import unstructure
out = {}
for case, table in json.loads(sys.argv[2]).items():
    try:
        out[case] = unstructure(load_config(table))
    except ConfigError as exc:
        out[case] = exc.problems
print(json.dumps(out, sort_keys=True, default=str))
"""


def _structured_after(imports: list[str]) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(imports), json.dumps(CASES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


@pytest.mark.e2e
def test_a_config_structures_the_same_whatever_was_imported_first():
    pytest.importorskip("distill_mel")
    pytest.importorskip("distill_auraloss")
    plugins_first = _structured_after(["distill_mel.config", "distill_auraloss.configs", "distill_core.loss.config"])
    core_first = _structured_after(["distill_core.loss.config", "distill_core.config.converter"])
    assert plugins_first == core_first
    # and each case says what it should: the plugins' own rules hold in both orders
    assert core_first["auraloss mel without rate"] == [
        [
            "terms.auraloss_melstft.sample_rate",
            "missing: auraloss.freq.MelSTFTLoss has no default sample rate; expected the audio's sample rate in Hz "
            "(e.g. sample_rate = 44100)",
        ]
    ]
    assert [p for p, _ in core_first["unknown schedule"]] == ["terms.kl.weight"]
    assert core_first["schedule weight"]["terms"]["kl"]["weight"] == {
        "schedule": "linear_warmup",
        "max": 0.5,
        "warmup_fraction": 0.3,
    }


def _registrations(path: Path) -> list[str]:
    """Calls that add hooks to a converter, outside the factory that makes it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and fn.name == "make_converter":
            inside |= {id(n) for n in ast.walk(fn)}
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr.startswith(("register_structure_hook", "register_unstructure_hook"))
        and id(node) not in inside
    ]


def test_no_module_of_the_core_or_the_plugins_registers_converter_hooks_outside_the_factory():
    files = [*ROOT.joinpath("distill_core").rglob("*.py")]
    files += [p for p in ROOT.joinpath("plugins").glob("*/distill_*/**/*.py") if "build" not in p.parts]
    assert len(files) > 100
    assert [r for p in sorted(files) for r in _registrations(p)] == []


def test_schedules_are_a_tagged_union_on_the_schedule_key():
    assert converter.structure({"schedule": "cosine", "start": 2.0}, Schedule) == Cosine(start=2.0, end=0.0)
    assert converter.structure({"schedule": "constant"}, Schedule) == Constant()
    warmup = LinearWarmup(max=0.5, warmup_fraction=0.2)
    table = unstructure(warmup)
    assert list(table) == ["schedule", "max", "warmup_fraction"]  # the tag first, as files are written
    assert converter.structure(table, Schedule) == warmup


def test_a_fresh_converter_from_the_factory_structures_as_the_core_one():
    fresh = make_converter()
    table = {"terms": {"kl": {"weight": {"schedule": "cyclical", "cycles": 2}}}}
    assert fresh.structure(table, LossConfig) == converter.structure(table, LossConfig) == load_config(table)
    assert fresh.unstructure(load_config(table)) == unstructure(load_config(table))


def test_a_config_class_that_only_fails_its_own_checks_reports_them_once():
    """Every field structured and the class's own check refused the combination: that problem alone, not
    re-checked with the field at its default (which would add a problem the user never wrote)."""
    pytest.importorskip("distill_mel")
    with pytest.raises(ConfigError) as info:
        load_config({"recipe": "none", "terms": {"mel": {"window_lengths": [2**30], "n_mels": [64]}}})
    paths = [p for p, _ in info.value.problems]
    assert paths == ["terms.mel.window_lengths[0]"], info.value.problems
