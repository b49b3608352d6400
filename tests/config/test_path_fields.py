"""A config field that names a file (``metadata={PATH_RELATIVE_TO_FILE: True}``): ``load_config(path)`` reads a
relative value from the config file's folder; an absolute one, ``~``, and configs given as mappings as written."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest

from distill_core import PATH_RELATIVE_TO_FILE, LossTerm, load_config
from distill_core.config.converter import converter, paths_relative_to


@attrs.define
class FileConfig:
    weight: float = 1.0
    table: str | None = attrs.field(default=None, metadata={PATH_RELATIVE_TO_FILE: True})
    label: str = "plain"  # an ordinary string: never a path


class FileTerm(LossTerm):
    """Reads a table from a file (here only its config matters)."""

    name = "file_term"
    config_class = FileConfig
    requires = ("recon",)

    def forward(self, batch):
        return batch["recon"].sum() * 0.0


def write(folder: Path, table: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "loss.toml"
    path.write_text(f'recipe = "none"\n[terms.file_term]\ntable = "{table}"\nlabel = "x.pt"\n', encoding="utf-8")
    return path


def test_a_relative_path_field_is_read_from_the_config_files_folder(register_term, tmp_path, monkeypatch):
    register_term(FileTerm)
    path = write(tmp_path / "conf", "tables/a.pt")
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf") / "loss.toml")  # a relative config path too: its folder made absolute
    assert config.terms["file_term"].table == str(tmp_path / "conf" / "tables" / "a.pt")
    assert config.terms["file_term"].label == "x.pt"  # no metadata: as written
    assert load_config(write(tmp_path / "abs", "/data/a.pt")).terms["file_term"].table == "/data/a.pt"
    home = load_config(write(tmp_path / "home", "~/a.pt")).terms["file_term"].table
    assert home == os.path.expanduser("~/a.pt")
    parent = load_config(write(tmp_path / "up" / "conf", "../a.pt")).terms["file_term"].table
    assert parent == str(tmp_path / "up" / "a.pt")
    assert load_config(path).terms["file_term"].table == str(tmp_path / "conf" / "tables" / "a.pt")
    # a mapping has no folder; nor does a structure after load_config returned
    table = {"recipe": "none", "terms": {"file_term": {"table": "tables/a.pt"}}}
    assert load_config(table).terms["file_term"].table == "tables/a.pt"
    assert converter.structure({"table": "b.pt"}, FileConfig).table == "b.pt"


def test_paths_relative_to_nests_and_resets(tmp_path):
    with paths_relative_to(tmp_path / "outer"):
        with paths_relative_to(tmp_path / "inner"):
            assert converter.structure({"table": "t.pt"}, FileConfig).table == str(tmp_path / "inner" / "t.pt")
        assert converter.structure({"table": "t.pt"}, FileConfig).table == str(tmp_path / "outer" / "t.pt")
        with pytest.raises(ValueError), paths_relative_to(tmp_path / "failing"):
            raise ValueError("a structure that fails leaves the folder as it was")
        assert converter.structure({"table": "t.pt"}, FileConfig).table == str(tmp_path / "outer" / "t.pt")
    assert converter.structure({"table": "t.pt", "weight": 2.0}, FileConfig) == FileConfig(2.0, "t.pt")
