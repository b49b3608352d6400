"""Term names a user cannot tell apart from what they meant: a non-ASCII look-alike letter is named, and a recipe's
entry redefined as another term is said as such (issue 36, item 10)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from distill_core.config.converter import ConfigError
from distill_core.config.errors import did_you_mean, not_ascii
from distill_core.loss.config import load_config
from distill_core.loss.model import name_problem

DZE = "\u0455"  # CYRILLIC SMALL LETTER DZE, drawn as 's'


def test_a_look_alike_letter_is_named_with_its_code_point():
    assert not_ascii(f"{DZE}tft") == f"; '{DZE}' (U+0455 CYRILLIC SMALL LETTER DZE) is not ASCII"
    assert not_ascii("stft") == ""
    assert did_you_mean(f"{DZE}tft", ["stft", "kl"]) == (
        f"; '{DZE}' (U+0455 CYRILLIC SMALL LETTER DZE) is not ASCII; did you mean 'stft'?"
    )
    assert did_you_mean("stfft", ["stft"]) == "; did you mean 'stft'?"
    assert name_problem("st ft\u00e9").endswith("; 'é' (U+00E9 LATIN SMALL LETTER E WITH ACUTE) is not ASCII")


@pytest.mark.parametrize(
    "section, path",
    [({f"{DZE}tft": {}}, f"terms.{DZE}tft"), ({"stft": {f"{DZE}cale": "mel"}}, f"terms.stft.{DZE}cale")],
    ids=["term name", "key"],
)
def test_a_look_alike_in_a_term_name_or_key_names_the_character(section, path):
    with pytest.raises(ConfigError) as info:
        load_config({"terms": section})
    ((where, reason),) = info.value.problems
    assert where == path
    assert f"'{DZE}' (U+0455 CYRILLIC SMALL LETTER DZE) is not ASCII" in reason
    assert "did you mean 'stft'?" in reason or "did you mean 'scale'?" in reason


@pytest.mark.e2e
def test_check_names_the_look_alike_in_one_line(tmp_path):
    path = tmp_path / "loss.toml"
    path.write_text(f'[terms."{DZE}tft"]\nweight = 1.0\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "distill_core.cli.main", "check", str(path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(
        f"error: invalid loss config in {path}: terms.{DZE}tft: unknown term '{DZE}tft'; '{DZE}' (U+0455 CYRILLIC "
        "SMALL LETTER DZE) is not ASCII; did you mean 'stft'?; installed terms: "
    )


def test_a_recipe_entry_redefined_as_another_term_is_said_as_such():
    with pytest.raises(ConfigError) as info:
        load_config({"terms": {"kl": {"term": "stft"}}})
    ((where, reason),) = info.value.problems
    assert where == "terms.kl"
    assert re.fullmatch(
        r"'kl' is the name of the installed term from distill-kl\S*, which term = 'stft' would replace; "
        r"name this 'stft' instance differently \(e\.g\. 'stft_kl'\)",
        reason,
    ), reason
