"""A missing optional module is a one-line error naming the extra; a broken installed one is not hidden."""

from __future__ import annotations

import sys

import pytest

from distill_core.util.extras import MissingExtra, available, require


def test_a_missing_module_names_the_extra_that_installs_it():
    with pytest.raises(MissingExtra) as info:
        require("matplotlib_that_is_not_there", "distill-loss plot", "train")
    assert str(info.value) == (
        "distill-loss plot needs matplotlib_that_is_not_there, which is not installed; "
        "install the 'train' extra: pip install 'distill-core[train]'"
    )
    assert isinstance(info.value, ImportError) and not available("matplotlib_that_is_not_there")


def test_the_extra_is_looked_up_by_top_level_module():
    with pytest.raises(MissingExtra, match=r"install the 'test' extra: pip install 'distill-core\[test\]'"):
        require("pytest.nothing_here", "the test kit")  # pytest is there, its submodule is not: still named
    assert require("tqdm.auto", "progress").tqdm is not None and available("tqdm")


def test_a_module_that_fails_inside_is_not_reported_as_missing(tmp_path, monkeypatch):
    (tmp_path / "half_installed.py").write_text("import a_dependency_it_lost\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("half_installed", "something")
    assert not isinstance(info.value, MissingExtra) and info.value.name == "a_dependency_it_lost"
    sys.modules.pop("half_installed", None)
